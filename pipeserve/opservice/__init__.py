"""One op of a pipeline as a gRPC microservice, and the gateway's client of it."""
