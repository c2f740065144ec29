"""The public surface of ``pipeserve`` is the seeds' names, locked here (STYLE R3).

Adding or removing a name is an API change: it must change this test too.
"""

from __future__ import annotations

import importlib

import pytest

import pipeserve

EXPECTED = {
    "ChannelData",
    "ChannelDataErrcode",
    "ErrCode",
    "Op",
    "PipelineClient",
    "PipelineServer",
    "ProductErrCode",
    "RequestOp",
    "ResponseOp",
}


def test_all_is_exactly_the_seeds_names():
    assert sorted(pipeserve.__all__) == sorted(EXPECTED)
    assert len(pipeserve.__all__) == len(set(pipeserve.__all__))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_public_name_is_importable_from_the_package(name):
    module = importlib.import_module("pipeserve")
    assert getattr(module, name) is not None
    namespace: dict[str, object] = {}
    exec(f"from pipeserve import {name}", namespace)  # noqa: S102 - the import statement users write
    assert namespace[name] is getattr(module, name)


def test_star_import_gives_exactly_all():
    namespace: dict[str, object] = {}
    exec("from pipeserve import *", namespace)  # noqa: S102
    assert set(namespace) - {"__builtins__"} == EXPECTED


def test_the_seeds_building_blocks_are_the_classes_users_subclass():
    from pipeserve.gateway.pipeline_server import PipelineServer
    from pipeserve.pipeline import op

    assert issubclass(pipeserve.RequestOp, pipeserve.Op)
    assert issubclass(pipeserve.ResponseOp, pipeserve.Op)
    assert pipeserve.Op is op.Op
    assert pipeserve.PipelineServer is PipelineServer


def test_version_is_a_string():
    assert isinstance(pipeserve.__version__, str) and pipeserve.__version__


def test_error_codes_keep_the_seeds_numbers():
    assert pipeserve.ChannelDataErrcode is pipeserve.ErrCode
    assert {code.name: int(code) for code in pipeserve.ErrCode} == {
        "OK": 0, "TIMEOUT": 1, "NOT_IMPLEMENTED": 2, "TYPE_ERROR": 3, "RPC_PACKAGE_ERROR": 4,
        "CLIENT_ERROR": 5, "CLOSED_ERROR": 6, "NO_SERVICE": 7, "UNKNOW": 8,
        "INPUT_PARAMS_ERROR": 9, "SERVER_BUSY": 10, "PRODUCT_ERROR": 500,
    }  # fmt: skip
