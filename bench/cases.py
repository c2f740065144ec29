"""What is measured: the servers, the cases that compare them, and each server's outcome.

Each case is one load applied to a ceiling and to the pipelines that must come near it; the
targets are the project's (the W1/W2 performance issue): a pipeline's figure divided by the
ceiling's, or, for a contender with a ``baseline``, by that other contender's (the embedded
pipeline, for the distributed variants), always measured in the same invocation.
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
    op_services: tuple[tuple[str, str], ...] = ()
    """Ops run remotely, as (op name, ``module:Class``): each gets a ``pipeserve opservice``
    process on a free loopback port, and the config gets the op's ``server_endpoints``."""
    op_service_config: str | None = None
    """The op services' own config in bench/pipelines/ (their workers, not the gateway's)."""

    def __post_init__(self) -> None:
        if bool(self.op_services) != (self.op_service_config is not None):
            raise ValueError(f"server {self.label!r}: op_services and op_service_config go together")


@dataclasses.dataclass(frozen=True)
class Contender:
    """A pipeline in a case and its target: a factor of the ceiling's figure, or of the
    ``baseline``'s, another contender of the same case."""

    server: Server
    target: float | None
    """None: report only."""
    baseline: Server | None = None


@dataclasses.dataclass(frozen=True)
class Case:
    """A load, the ceiling it is measured against, and the pipelines with their targets."""

    name: str
    load: loadgen.Load
    figure: str
    """The compared figure: "rps" (higher is better) or "p50_ms" (lower is better)."""
    ceiling: Server
    contenders: tuple[Contender, ...]

    def __post_init__(self) -> None:
        servers = [contender.server for contender in self.contenders]
        for contender in self.contenders:
            if contender.baseline is not None and contender.baseline not in servers:
                raise ValueError(
                    f"case {self.name}: baseline {contender.baseline.label!r} of "
                    f"{contender.server.label!r} is not one of the case's contenders"
                )

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger compared figure is better (throughput) or worse (latency)."""
        return self.figure == "rps"


W1_ASGI = Server("ceiling: bare ASGI", "bench.ceilings.w1_asgi")
W2_ASGI = Server("ceiling: bare ASGI + batcher", "bench.ceilings.w2_asgi")
# The ceilings again, writing each response in one system call as the gateway does: report
# only, to tell how much of a pipeline's figure comes from that write path.
W1_ASGI_ONE_WRITE = Server("ceiling, one write per response", "bench.ceilings.w1_asgi", ("--one-write",))
W2_ASGI_ONE_WRITE = Server("ceiling, one write per response", "bench.ceilings.w2_asgi", ("--one-write",))
ECHO_W1 = Server("ceiling: grpc.aio echo", "bench.ceilings.grpc_echo", ("--mode", "w1"))
ECHO_W2 = Server("ceiling: grpc.aio echo", "bench.ceilings.grpc_echo", ("--mode", "w2"))
W1_PIPELINE = Server("pipeline, 1 process", "bench.pipelines.w1_server", config="w1.yml")
W1_PIPELINE_2 = Server(
    "pipeline, 2 workers", "bench.pipelines.w1_server", config="w1_workers2.yml", workers=2
)
W2_PIPELINE = Server("pipeline", "bench.pipelines.w2_server", config="w2.yml")
W1_REMOTE = Server(
    "pipeline, remote bow+cnn",
    "bench.pipelines.w1_server",
    config="w1_remote.yml",
    op_services=(("bow", "bench.pipelines.w1_server:BowOp"), ("cnn", "bench.pipelines.w1_server:CnnOp")),
    op_service_config="w1_opservice.yml",
)
W2_REMOTE = Server(
    "pipeline, remote model",
    "bench.pipelines.w2_server",
    config="w2_remote.yml",
    op_services=(("model", "bench.pipelines.w2_server:Model"),),
    op_service_config="w2_opservice.yml",
)

W1_HTTP = loadgen.Load("w1", "http", connections=32)
W1_GRPC = loadgen.Load("w1", "grpc", connections=32)
W2_HTTP = loadgen.Load("w2", "http", connections=128)
W2_GRPC = loadgen.Load("w2", "grpc", connections=128)
W1_ONE_CONNECTION = loadgen.Load("w1", "http", connections=1)

CASES = (
    # Two worker processes must beat what one process can do at all: the 1-process ceiling.
    # The distributed variant (model ops in op services) is held to the embedded pipeline.
    Case(
        "w1-http", W1_HTTP, "rps", W1_ASGI,
        (
            Contender(W1_PIPELINE, 0.7),
            Contender(W1_PIPELINE_2, 1.2),
            Contender(W1_REMOTE, 0.5, baseline=W1_PIPELINE),
            Contender(W1_ASGI_ONE_WRITE, None),
        ),
    ),  # fmt: skip
    Case("w1-grpc", W1_GRPC, "rps", ECHO_W1, (Contender(W1_PIPELINE, 0.6),)),
    Case(
        "w2-http", W2_HTTP, "rps", W2_ASGI,
        (
            Contender(W2_PIPELINE, 0.9),
            Contender(W2_REMOTE, 0.8, baseline=W2_PIPELINE),
            Contender(W2_ASGI_ONE_WRITE, None),
        ),
    ),  # fmt: skip
    Case("w2-grpc", W2_GRPC, "rps", ECHO_W2, (Contender(W2_PIPELINE, None),)),
    Case("w1-latency", W1_ONE_CONNECTION, "p50_ms", W1_ASGI, (Contender(W1_PIPELINE, 1.5),)),
)


@dataclasses.dataclass
class Outcome:
    """One server's result in one case: its samples over the rounds, or why it failed."""

    server: Server
    target: float | None = None
    baseline: Server | None = None
    """The contender the target compares with; None: the ceiling."""
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
            cpu_us=statistics.median(cpu) if (cpu := [s.cpu_us for s in self.samples if s.cpu_us is not None]) else None,
        )


@dataclasses.dataclass
class CaseResult:
    """A case and its outcomes, the ceiling's first."""

    case: Case
    outcomes: list[Outcome]

    @classmethod
    def empty(cls, case: Case) -> CaseResult:
        """Outcomes for the ceiling and each contender, nothing measured yet."""
        contenders = [Outcome(c.server, c.target, c.baseline) for c in case.contenders]
        return cls(case, [Outcome(case.ceiling), *contenders])

    @property
    def ceiling(self) -> Outcome:
        """The ceiling's outcome."""
        return self.outcomes[0]

    def baseline_of(self, outcome: Outcome) -> Outcome | None:
        """The outcome of the contender that ``outcome``'s target compares with, if any."""
        if outcome.baseline is None:
            return None
        return next(other for other in self.outcomes[1:] if other.server == outcome.baseline)
