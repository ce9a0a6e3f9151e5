"""VPTQ against plain scalar and vector quantisation on the same layers at about the same
bits per weight: is VPTQ's perplexity on smollm2 the method or a defect?

Every variant quantises the same 2-D block weights (metrics.is_quantised; the tied
embedding stays float16 in all of them, as in every artifact) and is scored with the
workflow's own held-out perplexity (compression.perplexity.score, the config's card),
paired per document with the original's result file. Variants: VPTQ as the workflow
wrote it (``artifact``: its artifact, decoded), VPTQ re-encoded by this code
(``vptq``), the same k-means without Hessian weights (``kmeans``), and per-group
round-to-nearest (``rtn``: baselines.round_to_nearest) at several group sizes. Besides
the relative weight error it prints the Hessian-weighted proxy error
sum_j h_j ||dW[:, j]||^2 / sum_j h_j ||W[:, j]||^2 (h: the calibration's diagonal, the
loss VPTQ's k-means minimises), pooled over layers.

    nice -n 10 .venv/bin/python tools/vptq_vs_rtn.py RESULTS_DIR [--config config/config.yaml]
        [--variants artifact,vptq,kmeans,rtn]

RESULTS_DIR holds models/smollm2, datasets/ and compression/smollm2/{original.perplexity
.parquet, vptq.fbc} of a finished run (read only).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import yaml

from forgebench.compression import baselines, metrics, perplexity, vptq
from forgebench.compression.calibration import model_texts
from forgebench.compression.compress_model import (
    _load_lm,
    compress_state_dict,
    decode_record,
    decompress_artifact,
    load_state_dict,
)

RTN = [(4, "row"), (4, 192), (4, 64), (3, 64), (4, 32)]


def proxy_error(
    orig: dict[str, torch.Tensor], dec: dict[str, torch.Tensor], h: dict[str, torch.Tensor]
) -> float:
    num = den = 0.0
    for name, w in orig.items():
        hd = h[name].double()
        num += float(((dec[name].double() - w.double()).square() * hd).sum())
        den += float((w.double().square() * hd).sum())
    return math.sqrt(num / den)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--variants", default="artifact,vptq,kmeans,rtn")
    args = ap.parse_args()
    cfg = yaml.safe_load(args.config.read_text())
    comp = cfg["suites"]["compression"]
    ev = comp["evaluation"]
    vcfg = {"method": "vptq", **comp["methods"]["vptq"]}
    model_dir = args.results / "models" / args.model
    datasets = args.results / "datasets"
    out_dir = args.results / "compression" / args.model
    state = load_state_dict(model_dir)
    names = [n for n, t in state.items() if metrics.is_quantised(n, t)]
    orig = {n: state[n] for n in names}
    kept = {n: t.to(torch.float16).to(torch.float32) for n, t in state.items() if n not in orig}
    calib, _, _ = model_texts(model_dir, datasets, int(cfg["seed"]), key="tools")
    hdiag = vptq.prepare(vcfg, model_dir, calib).hessian_diag
    docs = perplexity.boolq_passages(datasets)
    ref, ref_card = perplexity.read_result(out_dir / "original.perplexity.parquet")
    model, tok = _load_lm(model_dir)

    def score(variant: dict[str, torch.Tensor]) -> tuple[float, object]:
        missing, unexpected = model.load_state_dict({**kept, **variant}, strict=False)
        assert not unexpected and all("lm_head" in m for m in missing), (missing, unexpected)
        frame, card = perplexity.score(
            model, tok, docs, max_tokens=ev["perplexity_tokens"],
            context=ev["perplexity_context"], stride=ev["perplexity_stride"],
        )  # fmt: skip
        perplexity.require_same_card(ref_card, card, "tools/vptq_vs_rtn")
        cmp = perplexity.paired_change(ref, frame, confidence=0.95, threshold=0.01)
        return perplexity.corpus_perplexity(frame), cmp

    n_q = sum(t.numel() for t in orig.values())
    rows = []

    def report(label: str, bits: float, dec: dict[str, torch.Tensor], secs: float) -> None:
        _, rel = metrics.relative_errors(orig, dec, names)
        ppl, cmp = score(dec)
        lo, hi = cmp.ratio_ci
        row = {
            "variant": label, "bits_per_weight": bits / n_q, "relative_error": rel,
            "proxy_error": proxy_error(orig, dec, hdiag), "perplexity": ppl,
            "ratio": cmp.ratio, "ratio_ci": [lo, hi], "verdict": cmp.verdict,
            "quantise_cpu_s": secs,
        }  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)

    variants = set(args.variants.split(","))
    report("original (embedding fp16)", 32.0 * n_q, orig, 0.0)
    if "artifact" in variants:
        art = decompress_artifact(out_dir / "vptq.fbc")
        bits = sum(vptq.theoretical_bits(vcfg, tuple(t.shape)) for t in orig.values())
        report("vptq (workflow artifact)", bits, {n: art[n] for n in names}, math.nan)
    for label, cfg_v in (
        ("vptq", vptq.Calibrated(vcfg, hdiag, 0)),
        ("kmeans", {**vcfg, "hessian_weighted": False}),
    ):
        if label not in variants:
            continue
        t0 = time.process_time()
        a, theo = compress_state_dict(orig, cfg_v)
        dec = {r.name: decode_record(r) for r in a.tensors}
        report(f"{label}, re-encoded by this code", theo, dec, time.process_time() - t0)
    for b, g in RTN if "rtn" in variants else ():
        t0 = time.process_time()
        dec, bits = {}, 0.0
        for n, w in orig.items():
            gs = w.shape[1] if g == "row" else int(g)
            dec[n] = baselines.round_to_nearest(w, b, gs)
            bits += baselines.round_to_nearest_bits(tuple(w.shape), b, gs)
        report(f"rtn {b}-bit, group {g}", bits, dec, time.process_time() - t0)


if __name__ == "__main__":
    main()
