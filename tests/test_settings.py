"""Each setting declared once: seeds derived in one place, and every front end built from the declarations."""

from __future__ import annotations

from s1.core.sampling import SEED_LIMIT, derive_seed


def test_seeds_keep_the_values_run_directories_were_written_with():
    """Values computed with the four derivations that existed before `derive_seed` (evaluate's problem_seed, its
    search children, the server's n choices, curation's retries): a changed value would orphan finished samples."""
    # evaluation samples: hash of (seed, problem id, sample, tries)
    assert derive_seed(0, 0, problem="60") == 373846627622337909
    assert derive_seed(1234, 3, problem="aime-7", tries=2) == 4475051058303305873
    assert derive_seed(5, 0, problem="p1") == 7864845531088497279
    assert derive_seed(5, 1, problem="p1") == 5293104578740480536
    assert derive_seed(5, 0, problem="p1", tries=1) == 3143556744720608770
    assert derive_seed(2**63 - 1, 0, problem="x", tries=1) == 5008511072899106421
    # a search's children: "node.child" (parallel methods have no node: the child index alone)
    assert derive_seed(7, 1, problem="12", node=4) == 6767944509766762444
    assert derive_seed(7, 3, problem=12, node="None") == 1845099737498934861
    assert derive_seed(5, 3, problem="p1") == 4927363384365551212
    # the server's k-th choice and curation's k-th retry: seed + k, wrapping below 2**63
    assert derive_seed(41, 0) == 41 and derive_seed(41, 3) == 44
    assert derive_seed(SEED_LIMIT - 1, 2) == 1
    assert derive_seed(None, 3) is None and derive_seed(None, 0, problem="p1") is None
