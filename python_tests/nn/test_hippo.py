"""hippo.py: the matrices against their definitions, the DPLR form against the dense matrix, the
diagonal initialisations against their formulas, PTD's conditioning, and bad arguments."""
import numpy as np
import pytest

from dssm_kernels import hippo as hp


def test_legs_entries():
    A, B = hp.transition("legs", 3)
    r = np.sqrt([1.0, 3.0, 5.0])
    want = np.array([[-1, 0, 0], [-r[1] * r[0], -2, 0], [-r[2] * r[0], -r[2] * r[1], -3]])
    np.testing.assert_allclose(A, want, rtol=1e-15)
    np.testing.assert_allclose(B, r, rtol=1e-15)


@pytest.mark.parametrize("measure", hp.MEASURES)
@pytest.mark.parametrize("N", [2, 8, 64])
def test_dplr_reconstructs_the_dense_matrix(measure, N):
    """A = 2 Re(V diag(Lambda) V^*) - P^T P: the pair half and its conjugates give back A (float64)."""
    A, B = hp.transition(measure, N)
    Lam, Pt, Bt, V = hp.dplr(measure, N)
    assert Lam.shape == (N // 2,) and V.shape == (N, N // 2) and Bt.shape == (N // 2,)
    assert np.all(Lam.imag >= 0)
    P = hp.rank_correction(measure, N)
    S = 2 * (V @ np.diag(Lam) @ V.conj().T).real
    np.testing.assert_allclose(S - P.T @ P, A, atol=1e-10 * np.abs(A).max())
    np.testing.assert_allclose(Pt, (V.conj().T @ P.T).T, rtol=1e-12)
    np.testing.assert_allclose(V.conj().T @ V, np.eye(N // 2), atol=1e-12)  # unitary columns


@pytest.mark.parametrize("N", [4, 16, 64])
def test_skew_hippo_is_the_normal_part_of_legs(N):
    Lam = hp.skew_hippo(N)
    np.testing.assert_allclose(Lam.real, -0.5, atol=1e-12)
    A, _ = hp.transition("legs", N)
    P = hp.rank_correction("legs", N)
    by_imag = lambda z: z[np.argsort(z.imag)]  # noqa: E731  (real parts are all -1/2 up to rounding)
    full = by_imag(np.linalg.eigvals(A + P.T @ P))
    mine = by_imag(np.concatenate([Lam, Lam.conj()]))
    np.testing.assert_allclose(mine, full, atol=1e-9 * np.abs(full).max())
    np.testing.assert_array_equal(hp.s4d_legs(N), Lam)


def test_s4d_formulas():
    N = 8
    n = np.arange(4)
    np.testing.assert_allclose(hp.s4d_lin(N), -0.5 + 1j * np.pi * n)
    np.testing.assert_allclose(hp.s4d_inv(N), -0.5 + 1j * N / np.pi * (N / (2 * n + 1) - 1))
    np.testing.assert_allclose(hp.s4d_real(N), -(n + 1.0))


@pytest.mark.parametrize("N", [16, 64, 256])
def test_ptd_is_well_conditioned(N):
    """Plain diagonalisation of LegS is ill-posed (cond(V) > 1e10 from N = 16 on); PTD with
    ||E|| = 1e-2 ||A|| keeps cond(V) below 1e3 and reproduces A + E."""
    r = hp.ptd(N, eps=1e-2)
    assert r.kappa_unperturbed > 1e10
    assert r.kappa < 1e3
    assert abs(r.rel_perturbation - 1e-2) < 1e-12
    A, B = hp.transition("legs", N)
    rec = r.V @ np.diag(r.Lambda) @ np.linalg.inv(r.V)
    np.testing.assert_allclose(rec, A + r.E, atol=1e-9 * np.abs(A).max())
    np.testing.assert_allclose(r.V @ r.B, B, atol=1e-9 * np.abs(B).max())


@pytest.mark.parametrize("call,exc,match", [
    (lambda: hp.transition("legx", 4), ValueError, r"transition: measure must be one of \('legs', 'legt', 'fout'\), got 'legx'"),
    (lambda: hp.transition("legs", 0), ValueError, r"transition: N must be an int in \[1, 8192\], got 0"),
    (lambda: hp.transition("legs", 4.0), TypeError, r"transition: N must be an int, got float"),
    (lambda: hp.dplr("legs", 5), ValueError, r"dplr: N must be even \(the state is conjugate pairs\), got 5"),
    (lambda: hp.s4d_lin(3), ValueError, r"s4d_lin: N must be even"),
    (lambda: hp.ptd(8, eps=0.0), ValueError, r"ptd: eps must be a finite number > 0, got 0.0"),
    (lambda: hp.ptd(8, trials=0), ValueError, r"ptd: trials must be an int >= 1, got 0"),
    # sizes are checked before the N x N allocation (a bare MemoryError for 7 TiB before)
    (lambda: hp.transition("legs", 10**6), ValueError, r"transition: N must be an int in \[1, 8192\], got 1000000"),
    (lambda: hp.dplr("legs", 1 << 14), ValueError, r"dplr: N must be an int in \[1, 8192\], got 16384"),
    (lambda: hp.s4d_lin(1 << 26), ValueError, r"s4d_lin: N must be an int in \[1, 16777216\], got 67108864"),
    (lambda: hp.ptd(8, eps=True), TypeError, r"ptd: eps must be a number, got bool \(True\)"),
    (lambda: hp.ptd(8, seed="x"), TypeError, r"ptd: seed must be an int or None, got str \('x'\)"),
    (lambda: hp.ptd(8, seed=-1), ValueError, r"ptd: seed must be an int >= 0 \(or None\), got -1"),
])
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def _ptd_transfer_functions(N, eps, seed=0):
    """On s = i w (w = 0 and a log grid up to 4 N^2, past the fastest mode): G of HiPPO-LegS by a dense
    solve (sI - A)^{-1} B, G~ of PTD through its diagonal form (Lambda, V^{-1} B, C V), and the bound
    |G - G~| <= ||C|| ||E|| ||(sI - A - E)^{-1}||_2 ||(sI - A)^{-1} B|| (the resolvent identity
    (sI - A - E)^{-1} - (sI - A)^{-1} = (sI - A - E)^{-1} E (sI - A)^{-1}, the bound the PTD paper's
    transfer-function estimate rests on)."""
    r = hp.ptd(N, eps=eps)
    A, B = hp.transition("legs", N)
    C = np.random.default_rng(seed).standard_normal(N)
    Bt, Ct = np.linalg.solve(r.V, B), C @ r.V
    G, Gt, bound = [], [], []
    for w in np.concatenate([[0.0], np.logspace(-2, np.log10(4 * N * N), 200)]):
        s = 1j * w
        RB = np.linalg.solve(s * np.eye(N) - A, B)
        G.append(C @ RB)
        Gt.append(Ct @ (Bt / (s - r.Lambda)))
        bound.append(np.linalg.norm(C) * np.linalg.norm(r.E, 2) * np.linalg.norm(np.linalg.inv(s * np.eye(N) - A - r.E), 2)
                     * np.linalg.norm(RB))
    return np.array(G), np.array(Gt), np.array(bound)


@pytest.mark.parametrize("N,eps", [(16, 1e-3), (16, 1e-2), (64, 1e-3), (64, 1e-2)])
def test_ptd_transfer_function_distance_within_the_bound(N, eps):
    G, Gt, bound = _ptd_transfer_functions(N, eps)
    assert np.all(np.abs(G - Gt) <= bound * (1 + 1e-6))


def test_ptd_transfer_function_converges_to_hippo():
    """The PTD system tends to HiPPO-LegS as the perturbation shrinks (distance O(||E||)); at N = 16,
    ||E|| = 1e-3 ||A|| it is within 5% of sup |G| (3.1% measured)."""
    dist = {}
    for eps in (1e-3, 1e-4):
        G, Gt, _ = _ptd_transfer_functions(16, eps)
        dist[eps] = np.abs(G - Gt).max() / np.abs(G).max()
    assert dist[1e-3] <= 5e-2
    assert dist[1e-4] <= dist[1e-3] / 3
