"""The live table stores a state's ``to_record`` as the very bytes of its ``to_dict``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.screening_state import (
    ClusterState,
    Confirmation,
    GateState,
    OutScan,
    PersonState,
    Sample,
    SeenIds,
)
from processors.table_writes import encode_value

offsets = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=8)),
        timezone(timedelta(hours=-4, minutes=-30)),
        timezone(timedelta(0)),
    ]
)
moments = st.builds(
    lambda us, whole, tz: (
        (datetime(1970, 1, 2, tzinfo=UTC) + timedelta(microseconds=us))
        .replace(microsecond=0 if whole else (us % 1_000_000))
        .astimezone(tz)
    ),
    st.integers(0, 9_000_000_000_000_000),
    st.booleans(),
    offsets,
)
celsius = st.floats(-50, 100, allow_nan=False)
ids = st.text(alphabet="abcdef0123456789-:", min_size=1, max_size=12)
samples = st.builds(Sample, ids, moments, celsius, ids, ids, st.none() | ids)
seen = st.builds(
    lambda pairs, newest: SeenIds(dict(pairs), newest),
    st.lists(st.tuples(ids, st.integers(0, 2**53)), max_size=5),
    st.none() | moments,
)
persons = st.builds(
    PersonState,
    st.none() | samples,
    st.lists(st.tuples(moments, celsius), max_size=8),
    st.none() | st.dates(),
    seen,
)
gates = st.builds(
    GateState,
    st.none() | st.fixed_dictionaries({"person_id": ids, "ends_on": st.dates().map(str)}),
    seen,
    st.lists(st.builds(OutScan, ids, moments, ids, ids), max_size=5),
)
clusters = st.builds(
    ClusterState,
    st.lists(st.builds(Confirmation, ids, ids, samples, samples), max_size=4),
    st.none() | moments,
    seen,
)


@settings(max_examples=400, deadline=None)
@given(persons)
def test_a_person_state_record_is_its_dict_byte_for_byte(state: PersonState) -> None:
    assert encode_value(state.to_record()) == encode_value(state.to_dict())
    assert PersonState.from_dict(state.to_dict()).to_dict() == state.to_dict()


@settings(max_examples=400, deadline=None)
@given(gates)
def test_a_gate_state_record_is_its_dict_byte_for_byte(state: GateState) -> None:
    assert encode_value(state.to_record()) == encode_value(state.to_dict())


@settings(max_examples=400, deadline=None)
@given(clusters)
def test_a_cluster_state_record_is_its_dict_byte_for_byte(state: ClusterState) -> None:
    assert encode_value(state.to_record()) == encode_value(state.to_dict())
    # Built once: a confirmation's record is the same dict on every encoding.
    for confirmation in state.confirmations:
        assert confirmation.record is confirmation.record
    assert ClusterState.from_dict(state.to_dict()).to_dict() == state.to_dict()
