"""The schema of ``backbone``: what every backbone declares, and each one's own arguments. A YAML
names its schema in its defaults list (``- /schema/backbone/small_cnn@_here_``)."""

from dataclasses import dataclass

from ssl_lab.schema import schema, setting

POOLINGS = ("mean", "cls", "last")  # text backbones: how token features become one vector
TOKENIZER_KINDS = ("char", "wordpiece", "bpe")
DIRECTIONS = ("forward", "backward")  # how a causal text model reads (pretext=clm)
SPECIAL_TOKENS = 5  # [PAD] [UNK] [CLS] [SEP] [MASK]


@schema("backbone/base", base_for="backbone")
@dataclass
class BackboneConfig:
    """What every backbone declares; the pipeline reads these, the constructor never sees them."""

    _target_: str = setting("the encoder class")
    name: str = setting("the choice's name: metrics.json, the report and the cache use it")
    modality: str = setting(
        "the data it encodes, checked against data.modality", choices=("image", "text")
    )
    checkpoint: str | None = setting(
        "a backbone.safetensors (or weights-only .pt) to transfer from, instead of pretraining"
    )


@schema("backbone/small_cnn")
@dataclass
class SmallCNNConfig(BackboneConfig):
    in_channels: int = setting("input channels", same_as="data.channels")
    widths: list[int] = setting("channels of each stage; each stage halves the map", ge=1)
    convs_per_stage: int = setting("3x3 conv-BN-ReLU layers per stage", ge=1)


@schema("backbone/resnet")
@dataclass
class ResNetConfig(BackboneConfig):
    depth: int = setting("torchvision's ResNet of this depth", choices=(18, 34, 50))
    in_channels: int = setting("input channels", same_as="data.channels")
    small_input: bool = setting("3x3 stride-1 stem without max-pool, for 32 px images")


@schema("backbone/vit")
@dataclass
class VisionTransformerConfig(BackboneConfig):
    in_channels: int = setting("input channels", same_as="data.channels")
    image_size: int = setting("the image side it is built for", same_as="data.size")
    patch_size: int = setting("patch side in pixels", ge=1, divides="backbone.image_size")
    width: int = setting("features per token", ge=1)
    depth: int = setting("Transformer blocks", ge=1)
    heads: int = setting("attention heads", ge=1, divides="backbone.width")
    mlp_ratio: int = setting("MLP width / width", ge=1)
    pooling: str = setting(
        "the image's feature: mean of the patch tokens, or the class token",
        choices=("mean", "cls"),
    )


@dataclass
class TokenizerConfig:
    kind: str = setting(
        "char: one token per character; wordpiece, bpe: subwords", choices=TOKENIZER_KINDS
    )
    vocab_size: int = setting(
        "at most this many tokens, the special ones included", gt=SPECIAL_TOKENS
    )
    min_frequency: int = setting("rarer characters or pieces become [UNK]", ge=1)
    lowercase: bool = setting("lowercase before tokenizing")
    max_length: int = setting(
        "tokens per text, [CLS] and [SEP] included", same_as="backbone.max_length"
    )
    path: str | None = setting("load it from a backbone.safetensors or tokenizer.json instead")


@schema("backbone/transformer")
@dataclass
class TransformerConfig(BackboneConfig):
    tokenizer: TokenizerConfig = setting("the tokenizer, trained on the pretraining text")
    vocab_size: int = setting("token embeddings", same_as="backbone.tokenizer.vocab_size")
    max_length: int = setting("tokens per text; longer texts are cut", ge=3)
    width: int = setting("features per token", ge=1)
    depth: int = setting("Transformer layers", ge=1)
    heads: int = setting("attention heads", ge=1, divides="backbone.width")
    mlp_ratio: int = setting("MLP width / width", ge=1)
    dropout: float = setting("dropout in every layer", ge=0, lt=1)
    causal: bool = setting("each token sees only those before it (pretext=clm sets it)")
    pooling: str = setting("how token features become one vector", choices=POOLINGS)
    pad_id: int = setting("the padding token's id", ge=0)
    context: int | None = setting(
        "causal: each token attends to at most this many before it (null: all; pretext.task "
        "sets it)",
        ge=1,
    )
    direction: str = setting(
        "causal: forward (future from past) or backward (past from present; pretext.task sets it)",
        choices=DIRECTIONS,
    )


@dataclass
class HFTokenizerConfig:
    path: str = setting("the model directory whose tokenizer to use")
    max_length: int = setting("tokens per text, special ones included", ge=3)


@schema("backbone/hf")
@dataclass
class HuggingFaceConfig(BackboneConfig):
    pretrained: bool = setting("its language-model head is trained already (prompting can use it)")
    path: str = setting("a local Hugging Face model directory (nothing is downloaded)")
    tokenizer: HFTokenizerConfig = setting("the model's tokenizer")
    pooling: str = setting("how token features become one vector", choices=POOLINGS)
    causal: bool | None = setting("what the pretext needs: a causal (true) or masked (false) model")
