"""Model compression: packed artifacts (artifact), fp16/int8 baselines, BitNet b1.58, SeedLM
(lfsr, seedlm), size/error metrics, the per-(model, method) entry compress_model, and the
compression/seedlm_search benchmark."""
