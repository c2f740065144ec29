"""The pipelines under test, written with pipeserve's public API as the seeds write servers."""
