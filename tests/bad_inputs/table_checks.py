"""The two checks of the bad-input tables test_bad_partial_labels.py and test_bad_gramian.py:
a case either raises (type and message) or returns a dict equal to the documented result."""

import numpy as np
import pytest


def raises(exc, match):
    """The case must raise ``exc`` with a message matching ``match``."""

    def check(run):
        with pytest.raises(exc, match=match):
            run()

    return check


def equals(expected):
    """The case must return exactly the keys of ``expected`` (a dict, or a function giving
    one), each equal to float32 round-off (NaN equals NaN)."""

    def check(run):
        got = run()
        want = expected() if callable(expected) else expected
        assert set(got) == set(want), (got, want)
        for key, value in want.items():
            np.testing.assert_allclose(
                np.asarray(got[key], np.float64),
                np.asarray(value, np.float64),
                rtol=2e-5,
                atol=1e-6,
                err_msg=key,
            )

    return check
