//! weft CRDs
