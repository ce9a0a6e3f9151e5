"""RAG retrieval suite: BM25, dense and hybrid retrieval over BoolQ, measured for speed and
quality. ``forgebench.rag.pipeline.RagPipeline`` is the reusable pipeline; the benchmark is
``forgebench.rag.retrieval``."""
