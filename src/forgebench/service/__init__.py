"""HTTP service suite: a real ASGI service on loopback, our load generator, load scenarios, wrk."""
