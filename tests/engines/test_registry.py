"""The engine registry: every entry loads through its class's own `load`, and a loaded engine is known by
its class (the capabilities the server and search read)."""

from __future__ import annotations

import inspect

import pytest

from s1.core.errors import UserError
from s1.engines import ENGINES, load_engine
from s1.engines.registry import SPECS, UNKNOWN, LoadOptions, names, spec, spec_of


@pytest.mark.parametrize("name", ENGINES)
def test_each_engine_class_takes_what_the_registry_passes(name):
    """A renamed or dropped `load` parameter fails here, not in a user's first run of that engine."""
    entry = SPECS[name]
    cls = entry.cls()
    assert spec_of(object.__new__(cls)) is entry
    parameters = inspect.signature(cls.load).parameters
    for key in ("fmt", *entry.load_args(LoadOptions())):
        assert key in parameters, f"{cls.__name__}.load takes no {key!r}"


def test_a_subclass_is_known_by_its_most_specific_registered_class(tiny):
    from s1.engines.hf import HFEngine
    from s1.engines.remote import RemoteEngine
    from s1.engines.reprefill import ReprefillEngine

    class Tuned(HFEngine):
        pass

    assert spec_of(Tuned(*tiny)).name == "hf"
    assert spec_of(ReprefillEngine.from_model(*tiny)).name == "reprefill"
    assert issubclass(RemoteEngine, ReprefillEngine) and spec_of(object.__new__(RemoteEngine)).name == "remote"
    assert spec_of(object()) is UNKNOWN


def test_capabilities_choose_and_name_the_engines():
    assert names(serves=True) == ["hf", "llamacpp", "remote"]
    assert names(serves=True, logprobs=True) == ["hf", "llamacpp"]
    with pytest.raises(UserError, match="Unknown engine 'reprefill'; choose one of hf, llamacpp, remote."):
        spec("reprefill", serves=True)
    with pytest.raises(UserError, match="Unknown engine 'vllm'; choose one of hf, reprefill, llamacpp, remote."):
        load_engine("smollm2", "vllm")
    with pytest.raises(UserError, match="base_urls is only for engine remote") as refused:
        load_engine("smollm2", "llamacpp", base_urls=["http://127.0.0.1:1"])
    # the library names the settings; the CLI words them as its flags
    assert refused.value.worded(lambda s: "--" + s.replace("_", "-")) == "--base-urls is only for --engine remote."
