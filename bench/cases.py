"""What is measured: the servers, the cases that compare them, and each server's outcome.

Each case is one load applied to a ceiling and to the pipelines that must come near it; the
targets are the project's (the W1/W2 performance issue): a pipeline's figure divided by the
ceiling's, measured in the same invocation.
"""

from __future__ import annotations

import dataclasses
import statistics

from bench import loadgen


@dataclasses.dataclass(frozen=True)
class Server:
    """A server under test: the module to run and, for pipelines, the config it is given."""

    label: str
    module: str
    args: tuple[str, ...] = ()
    config: str | None = None
    """A YAML in bench/pipelines/; its ports are replaced with free ones."""
    workers: int = 1
    """Processes expected to listen on the HTTP port (SO_REUSEPORT workers)."""


@dataclasses.dataclass(frozen=True)
class Case:
    """A load, the ceiling it is measured against, and the pipelines with their targets."""

    name: str
    load: loadgen.Load
    figure: str
    """The compared figure: "rps" (higher is better) or "p50_ms" (lower is better)."""
    ceiling: Server
    contenders: tuple[tuple[Server, float | None], ...]
    """Each pipeline and its target factor against the ceiling's figure (None: report only)."""

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger compared figure is better (throughput) or worse (latency)."""
        return self.figure == "rps"


W1_ASGI = Server("ceiling: bare ASGI", "bench.ceilings.w1_asgi")
W2_ASGI = Server("ceiling: bare ASGI + batcher", "bench.ceilings.w2_asgi")
ECHO_W1 = Server("ceiling: grpc.aio echo", "bench.ceilings.grpc_echo", ("--mode", "w1"))
ECHO_W2 = Server("ceiling: grpc.aio echo", "bench.ceilings.grpc_echo", ("--mode", "w2"))
W1_PIPELINE = Server("pipeline, 1 process", "bench.pipelines.w1_server", config="w1.yml")
W1_PIPELINE_2 = Server(
    "pipeline, 2 workers", "bench.pipelines.w1_server", config="w1_workers2.yml", workers=2
)
W2_PIPELINE = Server("pipeline", "bench.pipelines.w2_server", config="w2.yml")

W1_HTTP = loadgen.Load("w1", "http", connections=32)
W1_GRPC = loadgen.Load("w1", "grpc", connections=32)
W2_HTTP = loadgen.Load("w2", "http", connections=128)
W2_GRPC = loadgen.Load("w2", "grpc", connections=128)
W1_ONE_CONNECTION = loadgen.Load("w1", "http", connections=1)

CASES = (
    # Two worker processes must beat what one process can do at all: the 1-process ceiling.
    Case("w1-http", W1_HTTP, "rps", W1_ASGI, ((W1_PIPELINE, 0.7), (W1_PIPELINE_2, 1.2))),
    Case("w1-grpc", W1_GRPC, "rps", ECHO_W1, ((W1_PIPELINE, 0.6),)),
    Case("w2-http", W2_HTTP, "rps", W2_ASGI, ((W2_PIPELINE, 0.9),)),
    Case("w2-grpc", W2_GRPC, "rps", ECHO_W2, ((W2_PIPELINE, None),)),
    Case("w1-latency", W1_ONE_CONNECTION, "p50_ms", W1_ASGI, ((W1_PIPELINE, 1.5),)),
)


@dataclasses.dataclass
class Outcome:
    """One server's result in one case: its samples over the rounds, or why it failed."""

    server: Server
    target: float | None = None
    samples: list[loadgen.Figures] = dataclasses.field(default_factory=list)
    answer: float | None = None
    error: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    def figures(self) -> loadgen.Figures | None:
        """Medians over the rounds (errors summed); None when nothing was measured."""
        if not self.samples:
            return None
        return loadgen.Figures(
            rps=statistics.median(s.rps for s in self.samples),
            p50_ms=statistics.median(s.p50_ms for s in self.samples),
            p99_ms=statistics.median(s.p99_ms for s in self.samples),
            errors=sum(s.errors for s in self.samples),
        )


@dataclasses.dataclass
class CaseResult:
    """A case and its outcomes, the ceiling's first."""

    case: Case
    outcomes: list[Outcome]

    @classmethod
    def empty(cls, case: Case) -> CaseResult:
        """Outcomes for the ceiling and each contender, nothing measured yet."""
        contenders = [Outcome(server, target) for server, target in case.contenders]
        return cls(case, [Outcome(case.ceiling), *contenders])

    @property
    def ceiling(self) -> Outcome:
        """The ceiling's outcome."""
        return self.outcomes[0]
