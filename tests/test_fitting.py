"""Fitting Anny to keypoints (``i2lmesh.fitting``): recovery from exact 2D / 3D keypoints, confidences, warm start,
batching, dtypes, the keypoint shortcut and the keypoint sets. Bounds come from benchmarks/bench_fitting.py
(docs/fitting.md) with margin; fits use few people and, where only a property is checked, a short schedule."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("anny")
pytest.importorskip("roma")

from i2lmesh.fitting import FitConfig, fit_to_keypoints, keypoint_regressor  # noqa: E402
from i2lmesh.fitting.forward import AnnyKeypointModel  # noqa: E402
from i2lmesh.fitting.synthetic import fit_errors, mean_pose_result, synthetic_targets  # noqa: E402

SHORT = FitConfig(rigid_iters=8, stages=((0.3, 0.3, 8),), warm_iters=8, hand_orientations=16)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Fitting runs thousands of small ops: one thread is faster, and much faster on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def body(anny_body):
    return anny_body


@pytest.fixture(scope="module")
def hand(anny_hand):
    return anny_hand


@pytest.fixture(scope="module")
def targets(body):
    return synthetic_targets(body, 3, seed=4, keypoint_set="coco17")


@pytest.fixture(scope="module")
def fit2d(body, targets):
    return fit_to_keypoints(body, targets["keypoints_2d"], None, targets["K"], keypoint_set="coco17")


def _one(target, i):
    return {k: v[i:i + 1] for k, v in target.items()}


def test_recovers_body_from_2d_keypoints(body, targets, fit2d):
    errors = fit_errors(fit2d, targets, body)
    baseline = fit_errors(mean_pose_result(body, targets), targets, body)
    # benchmark (50 held-out bodies): median PA-MPJPE 33 mm (90th percentile 75 mm); these three: 27-33 mm;
    # the mean pose at the true placement: 107-160 mm
    assert np.median(errors["pa_mpjpe"]) < 50.0
    assert np.median(errors["pa_mpjpe"]) < 0.5 * np.median(baseline["pa_mpjpe"])
    assert float(fit2d.residual_px.nanmedian()) < 3.0
    assert fit2d.vertices_m.shape == (3, body.num_vertices, 3) and fit2d.keypoints_px.shape == (3, 17, 2)
    # the parameters reproduce the mesh through the body model's own forward
    again = body(pose=fit2d.pose.reshape(3, -1), shape=fit2d.shape, trans=fit2d.translation)
    torch.testing.assert_close(again.vertices_m, fit2d.vertices_m, atol=1e-5, rtol=0)


def test_recovers_body_from_3d_keypoints(body, targets):
    result = fit_to_keypoints(body, targets["keypoints_2d"][:1], None, targets["K"][:1],
                              keypoints_3d=targets["keypoints_3d"][:1])
    errors = fit_errors(result, _one(targets, 0), body)
    assert errors["mpjpe"][0] < 20.0  # benchmark: median 10 mm; this body: 11 mm
    assert float(result.residual_3d_m.nanmedian()) < 0.01


def test_root_relative_3d_keypoints(body, targets):
    rel = targets["keypoints_3d"][:1] - targets["keypoints_3d"][:1, 11:13].mean(1, keepdim=True)  # hip centre
    result = fit_to_keypoints(body, targets["keypoints_2d"][:1], None, targets["K"][:1], keypoints_3d=rel,
                              keypoints_3d_relative=True)
    errors = fit_errors(result, _one(targets, 0), body)
    assert errors["mpjpe"][0] < 25.0


def test_recovers_hand_from_2d_keypoints(hand):
    target = synthetic_targets(hand, 2, seed=3, keypoint_set="mano21")
    result = fit_to_keypoints(hand, target["keypoints_2d"], None, target["K"], keypoint_set="mano21")
    errors = fit_errors(result, target, hand)
    baseline = fit_errors(mean_pose_result(hand, target), target, hand)
    assert np.median(errors["pa_mpjpe"]) < 10.0  # benchmark: median 1.8 mm (21 joints); these: 2.1-2.3; mean pose 21
    assert np.median(errors["pa_mpjpe"]) < 0.5 * np.median(baseline["pa_mpjpe"])


def test_zero_confidence_ignores_a_keypoint(body, targets):
    kp = targets["keypoints_2d"][:1].clone()
    conf = torch.ones(1, 17)
    conf[0, [9, 15]] = 0.0  # left wrist, left ankle
    first = fit_to_keypoints(body, kp, conf, targets["K"][:1], config=SHORT)
    moved = kp.clone()
    moved[0, 9] = torch.tensor([1e5, -3e4])
    moved[0, 15] = float("nan")
    second = fit_to_keypoints(body, moved, conf, targets["K"][:1], config=SHORT)
    torch.testing.assert_close(first.vertices_m, second.vertices_m, atol=0, rtol=0)
    assert torch.isnan(second.residual_px[0, [9, 15]]).all() and torch.isfinite(second.residual_px[0, :9]).all()


def test_warm_start_converges_in_fewer_evaluations(body, targets, fit2d):
    one = _one(targets, 0)
    cold = int(fit2d.evaluations[0])
    init = {k: v[:1] for k, v in fit2d.params.items()}
    warm = fit_to_keypoints(body, one["keypoints_2d"], None, one["K"], init=init)
    assert int(warm.evaluations[0]) < cold
    assert fit_errors(warm, one, body)["pa_mpjpe"][0] < fit_errors(fit2d, targets, body)["pa_mpjpe"][0] + 2.0
    assert float(warm.residual_px.nanmedian()) < float(fit2d.residual_px[0].nanmedian()) + 0.5


@pytest.fixture(scope="module")
def short_singles(body, targets):
    return [fit_to_keypoints(body, targets["keypoints_2d"][i:i + 1], None, targets["K"][i:i + 1], config=SHORT)
            for i in range(2)]


def test_batch_equals_singles(body, targets, short_singles):
    batch = fit_to_keypoints(body, targets["keypoints_2d"][:2], None, targets["K"][:2], config=SHORT)
    for i, single in enumerate(short_singles):
        torch.testing.assert_close(batch.vertices_m[i:i + 1], single.vertices_m, atol=1e-5, rtol=0)
        torch.testing.assert_close(batch.pose[i:i + 1], single.pose, atol=1e-5, rtol=0)
        assert batch.loss_history[i] == single.loss_history[0]


def test_float64_inputs(body, targets, short_singles):
    kp, K = targets["keypoints_2d"][:1], targets["K"][:1]
    double = fit_to_keypoints(body, kp.double(), torch.ones(1, 17, dtype=torch.float64), K.double().numpy()[0],
                              config=SHORT)
    assert double.vertices_m.dtype == torch.float32
    torch.testing.assert_close(double.vertices_m, short_singles[0].vertices_m, atol=1e-4, rtol=0)


def test_default_intrinsics_and_errors(body, targets):
    with pytest.raises(ValueError, match="image_size"):
        fit_to_keypoints(body, targets["keypoints_2d"][:1])
    with pytest.raises(ValueError, match="17"):
        fit_to_keypoints(body, torch.zeros(1, 16, 2), K=targets["K"][0])
    with pytest.raises(KeyError, match="unknown keypoint set"):
        fit_to_keypoints(body, torch.zeros(1, 17, 2), K=targets["K"][0], keypoint_set="nope")
    with pytest.raises(ValueError, match="keypoints_2d, keypoints_3d"):
        fit_to_keypoints(body)
    result = fit_to_keypoints(body, targets["keypoints_2d"][:1], image_size=(512, 512), config=SHORT)
    assert torch.isfinite(result.vertices_m).all()


def test_keypoint_shortcut_matches_the_forward(body, hand):
    for model, name in ((body, "coco17"), (body, "h36m17"), (hand, "mano21")):
        _, regressor = keypoint_regressor(model, name)
        fast = AnnyKeypointModel(model, regressor)
        assert fast.max_error_m < 1e-4
        params = model.sample_params(3, torch.Generator().manual_seed(11))
        with torch.no_grad():
            exact = fast.exact(params["pose"], params["shape"])[1]
            approx = fast.keypoints(params["pose"], params["shape"], fast.prepare(params["shape"]))
        torch.testing.assert_close(approx, exact, atol=1e-4, rtol=0)


def test_coco_regressor_from_anny(body):
    joint_set, regressor = keypoint_regressor(body, "coco17")
    assert joint_set.names[0] == "Nose" and regressor.shape == (17, body.num_vertices)
    torch.testing.assert_close(regressor.sum(1), torch.ones(17), atol=1e-5, rtol=0)
    # the reduced-mesh rows agree with Anny's own full-mesh COCO regressor on Anny's full mesh
    import roma
    from anny.keypoints import KeypointsRegressor

    weights = KeypointsRegressor.coco(body.anny).regression_weights[:17]
    params = body.sample_params(2, torch.Generator().manual_seed(5))
    delta = torch.zeros(2, body.num_pose_rotations, 4, 4)
    delta[..., :3, :3] = roma.rotvec_to_rotmat(params["pose"])
    delta[..., 3, 3] = 1.0
    with torch.no_grad():
        reduced = regressor @ body(**params).vertices_m
        full = body.anny(pose_parameters=delta, phenotype_kwargs=params["shape"])["vertices"].float()
    assert float((reduced - weights @ full).norm(dim=-1).max()) < 0.003


def test_reduced_chain_matches_the_forward(body, hand, anny_hand_left):
    """The fitter's kinematic chain over the optimised bones only, the others folded into constants
    (``forward._ReducedChain``): at its linearisation point it gives the full forward's keypoints, with any fixed
    rotations (a warm start's) and for a mirrored (left) hand."""
    import roma

    from i2lmesh.fitting.fit import _pose_keypoints, _prepare, _setup

    for model, name in ((body, "coco23"), (hand, "mano21"), (anny_hand_left, "mano21")):
        setup = _setup(model, name)
        assert setup.chain is not None and len(setup.chain.bones) == len(setup.pose_space.bones)
        params = model.sample_params(2, torch.Generator().manual_seed(7))
        pose = roma.rotvec_to_rotmat(params["pose"].reshape(2, -1, 3))
        pose[:, 0] = roma.random_rotmat(2, generator=torch.Generator().manual_seed(8))
        angles = setup.pose_space.to_params(pose)
        with torch.no_grad():
            ctx = _prepare(setup, params["shape"], pose)
            fast = _pose_keypoints(setup, pose)(angles, pose[:, 0], params["shape"], ctx)
            exact = setup.model.exact(setup.pose_space.to_pose(angles, pose[:, 0], pose), params["shape"])[1]
        error = float((fast - exact).norm(dim=-1).max())
        assert error < 1e-4, (name, error)  # metres; measured 1e-5 (body), 1e-7 (hands)
    if body.num_pose_rotations > 60:  # the body's chain: 31 bones on 11 levels instead of 78 on 15
        chain = _setup(body, "coco23").chain
        assert len(chain.bones) == 31 and len(chain.levels) == 11


def test_reduced_chain_gradient(body, hand):
    """The chain's hand-written backward (one autograd node) equals finite differences (double precision)."""
    import roma

    from i2lmesh.fitting.fit import _prepare, _setup

    for model, name in ((body, "coco23"), (hand, "mano21")):
        setup = _setup(model, name)
        chain, bones = setup.chain, len(setup.chain.bones)
        generator = torch.Generator().manual_seed(3)
        base = torch.eye(3).expand(1, model.num_pose_rotations, 3, 3)
        lin = _prepare(setup, setup.shape_prior.mean[None], base)["lin0"].double().expand(2, -1).clone()
        root = roma.random_rotmat(2, generator=generator).double()
        rot = roma.random_rotmat(2 * bones, generator=generator).double().reshape(2, bones, 3, 3)
        inputs = (root.requires_grad_(), rot.requires_grad_(), lin.requires_grad_())
        assert torch.autograd.gradcheck(lambda a, b, c: chain.keypoints(a, b, c), inputs, eps=1e-6, atol=1e-5)


def test_rotation_formulas_match_roma(body):
    import roma

    from i2lmesh.fitting.fit import _rotvec_to_rotmat, _setup

    space = _setup(body, "coco17").pose_space
    angles = (torch.rand(3, len(space.bones), 3, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 3.0
    torch.testing.assert_close(space.rotations(angles), roma.euler_to_rotmat("XZY", angles * space.free),
                               atol=2e-6, rtol=0)
    vectors = torch.randn(50, 3, generator=torch.Generator().manual_seed(1)) * 1.5
    vectors[0], vectors[1] = 0.0, 1e-7
    torch.testing.assert_close(_rotvec_to_rotmat(vectors), roma.rotvec_to_rotmat(vectors), atol=2e-6, rtol=0)
    # every fit starts at a zero rotation vector: finite gradient there, that of the first-order term
    zero = torch.zeros(1, 3, requires_grad=True)
    weights = torch.randn(3, 3, generator=torch.Generator().manual_seed(2))
    (_rotvec_to_rotmat(zero)[0] * weights).sum().backward()
    expected = torch.stack([weights[2, 1] - weights[1, 2], weights[0, 2] - weights[2, 0],
                            weights[1, 0] - weights[0, 1]])
    torch.testing.assert_close(zero.grad[0], expected, atol=1e-6, rtol=0)


def test_threads_and_rigid_solvers(body, targets):
    """The fit runs on one torch thread and restores the caller's count; the PnP rigid stage (bodies' default) and
    the LBFGS one both place the body."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        original = fit_to_keypoints.__globals__["_fit_to_keypoints"]

        def spy(*args):
            seen.append(torch.get_num_threads())
            return original(*args)

        fit_to_keypoints.__globals__["_fit_to_keypoints"] = spy
        try:
            results = {solver: fit_to_keypoints(body, targets["keypoints_2d"][:1], None, targets["K"][:1],
                                                config=FitConfig(rigid_solver=solver, stages=((10.0, 10.0, 10, 10.0),)))
                       for solver in ("pnp", "lbfgs")}
        finally:
            fit_to_keypoints.__globals__["_fit_to_keypoints"] = original
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    for solver, result in results.items():
        assert float(result.residual_px.nanmedian()) < 5.0, solver
    # the PnP stage costs no loss evaluation: the LBFGS one ~30 more
    assert int(results["lbfgs"].evaluations[0]) > int(results["pnp"].evaluations[0]) + 15


def test_cold_fits_do_not_depend_on_earlier_fits(body, targets):
    """Linearisations are reused for cold fits only where they are the same (the prior's mean shape): a fit's result
    does not depend on which fits ran before it."""
    from i2lmesh.fitting.fit import _setup

    kp, K = targets["keypoints_2d"], targets["K"]
    _setup(body, "coco17").contexts.clear()
    alone = fit_to_keypoints(body, kp[2:3], None, K[2:3], config=SHORT)
    fit_to_keypoints(body, kp[:2], None, K[:2], config=SHORT)
    after = fit_to_keypoints(body, kp[2:3], None, K[2:3], config=SHORT)
    torch.testing.assert_close(after.vertices_m, alone.vertices_m, atol=0, rtol=0)


def test_exact_forward_with_cached_rest_model_matches_the_body_model(body, hand, anny_hand_left):
    """``AnnyKeypointModel.exact`` keeps Anny's rest model per shape (the output of every fit): the same vertices and
    joints as the body model's forward, for new shapes, cached ones and a batch mixing both, hands mirrored or not;
    inputs with gradients take the uncached forward."""
    from i2lmesh.fitting.fit import _setup

    for model, name in ((body, "coco23"), (hand, "mano21"), (anny_hand_left, "mano21")):
        km = _setup(model, name).model
        params = model.sample_params(3, torch.Generator().manual_seed(11))
        trans = torch.tensor([[0.1, -0.2, 3.0]]).expand(3, 3)
        km.__dict__.pop("_rest_cache", None)
        for rows in ([0], [0, 1, 2], [2, 0]):  # new, then partly cached, then all cached
            with torch.no_grad():
                want = model(params["pose"][rows], params["shape"][rows], trans[rows])
                got, kp = km.exact(params["pose"][rows], params["shape"][rows], trans[rows])
            torch.testing.assert_close(got.vertices_m, want.vertices_m, atol=1e-6, rtol=0)
            torch.testing.assert_close(got.joints_m, want.joints_m, atol=1e-6, rtol=0)
            torch.testing.assert_close(kp, km.regressor @ want.vertices_m, atol=1e-6, rtol=0)
        assert len(km._rest_cache) == 3
        if model is body:  # a batch larger than the cache
            many = model.sample_params(km.REST_CACHE + 2, torch.Generator().manual_seed(12))
            with torch.no_grad():
                got, _ = km.exact(many["pose"], many["shape"])
                want = model(many["pose"], many["shape"])
            torch.testing.assert_close(got.vertices_m, want.vertices_m, atol=1e-6, rtol=0)
            assert len(km._rest_cache) == km.REST_CACHE
        shape = params["shape"][:1].clone().requires_grad_(True)
        out, _ = km.exact(params["pose"][:1], shape)
        out.vertices_m.sum().backward()
        assert shape.grad is not None and float(shape.grad.abs().sum()) > 0


def test_warm_shape_false_keeps_the_track_shape(body, targets, fit2d):
    """``FitConfig(warm_shape=False)``: a warm start keeps init's shape exactly (a video's person) and still follows
    the moved keypoints; with the default the shape moves; cold fits are the same either way."""
    one = _one(targets, 0)
    init = {k: v[:1] for k, v in fit2d.params.items()}
    moved = one["keypoints_2d"] + torch.tensor([6.0, -4.0])
    config = FitConfig(warm_iters=5, warm_shape=False)
    warm = fit_to_keypoints(body, moved, None, one["K"], init=init, config=config)
    torch.testing.assert_close(warm.shape, init["shape"], atol=0, rtol=0)
    assert float(warm.residual_px.nanmedian()) < 2.0  # px; the warm start followed the 7 px move
    free = fit_to_keypoints(body, moved, None, one["K"], init=init, config=FitConfig(warm_iters=5))
    assert float((free.shape - init["shape"]).abs().max()) > 1e-4
    # cold fits do not read warm_shape
    from dataclasses import replace

    cold = [fit_to_keypoints(body, one["keypoints_2d"], None, one["K"], config=c)
            for c in (SHORT, replace(SHORT, warm_shape=False))]
    torch.testing.assert_close(cold[0].vertices_m, cold[1].vertices_m, atol=0, rtol=0)
