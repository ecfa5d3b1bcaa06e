"""Encoders: images (or tokens) -> features.

Every backbone is an ``nn.Module`` with ``out_dim`` (pooled feature size), ``forward(x)`` returning
pooled features (B, out_dim), ``forward_features(x)`` returning the spatial map before pooling, and
``blocks()`` listing its stages from input to output (for freeze policies).
"""
