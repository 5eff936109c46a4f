"""Runner-side executor units: start-up probes and result-frame splicing."""

from __future__ import annotations

import os
import shutil
import tempfile

import orjson

from taskbox.executor.probe import unreadable_for


def test_private_directory_on_the_stdlib_path_is_reported() -> None:
    root = tempfile.mkdtemp(dir="/tmp")  # /tmp is world-searchable, unlike pytest's tmp_path
    try:
        os.chmod(root, 0o755)
        home = os.path.join(root, "home")
        lib = os.path.join(home, "lib")
        os.makedirs(lib)
        os.chmod(home, 0o700)
        owner = os.stat(home).st_uid
        other = 65534 if owner != 65534 else 65533
        assert unreadable_for(other, other, lib) == home
        assert unreadable_for(owner, owner, lib) is None
        os.chmod(home, 0o755)
        assert unreadable_for(other, other, lib) is None
    finally:
        shutil.rmtree(root)


def test_result_frames_are_spliced_only_when_they_hold_one_json_value() -> None:
    from taskbox.executor.supervisor import result_outcome

    good = result_outcome(b'{"t":"result","result":[{"json":{"a":1}}]}')
    assert good is not None
    assert good.result == [{"json": {"a": 1}}]
    assert good.result_json == b'[{"json":{"a":1}}]'
    # A forged frame that is valid JSON as a whole but would add keys next to
    # "result" once spliced into runner:taskdone must not take the splice path.
    assert result_outcome(b'{"t":"result","result":[],"staticData":{"x":1}}') is None
    assert result_outcome(b'{"t":"result","result":1,"t":"result"}') is None
    assert result_outcome(b'{"t":"result","result":NaN}') is None
    assert result_outcome(b'{"t":"error","error":{}}') is None
    # The same for a result large enough to be validated without being decoded.
    big = b"[" + b",".join(b'{"json":{"n":%d,"s":"x"}}' % i for i in range(5_000)) + b"]"
    spliced = result_outcome(b'{"t":"result","result":' + big + b"}")
    assert spliced is not None and spliced.result_json == big
    assert spliced.result == orjson.loads(big)
    assert result_outcome(b'{"t":"result","result":' + big + b',"staticData":{"x":1}}') is None
    assert result_outcome(b'{"t":"result","result":' + big[:-1] + b'],"t":"x"}') is None
