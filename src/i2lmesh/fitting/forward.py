"""Keypoints of a body model as a function of its pose and shape: what the fitter evaluates at every step.

Two implementations behind one interface (:class:`KeypointModel`):

- :class:`GenericKeypointModel` (any :class:`~i2lmesh.bodymodels.base.BodyModel`: SMPL, MANO, Anny): the full
  forward, then ``regressor @ vertices``.
- :class:`AnnyKeypointModel` (models exposing an Anny module as ``.anny``): the same keypoints without the mesh.
  With linear blend skinning and a linear regressor, keypoint k is
  ``sum_j A_j m_kj + c_kj b_j`` with ``[A_j | b_j]`` bone j's skinning transform, ``c_kj = sum_v R_kv w_vj`` and
  ``m_kj = sum_v R_kv w_vj v_v`` (v_v the rest vertices, w the skinning weights, R the keypoint regressor): an exact
  rearrangement, with only the bones that move some keypoint (and their ancestors) in the kinematic chain. Anny's
  rest skeleton and ``m`` depend on the 6 phenotypes through blendshapes and a Procrustes step that cost more
  than the rest of a step together; :meth:`AnnyKeypointModel.prepare` linearises them around the current shape
  (a one-sided finite difference, one batched call), and the fitter re-linearises between its stages and computes
  its outputs with the exact forward. At the linearisation point the keypoints equal the full forward's (checked
  when the model is built: ``max_error_m``).

Fixed bones folded (what the fitter evaluates, :meth:`AnnyKeypointModel.reduced`): a fit optimises some bones
(31 of the 78 that move a body's keypoints); a bone whose rotation stays fixed has a pose that is its nearest
optimised ancestor's times a constant, so its terms fold into that ancestor's moments and the chain runs over the
optimised bones only (:class:`_ReducedChain`, 12 levels instead of 15 for a body). Its constants are linearised in
the shape like the rest (:meth:`AnnyKeypointModel.prepare_reduced`), and the chain is one autograd node with a
hand-written backward (:class:`_ChainKeypoints`).
"""
from __future__ import annotations

import logging
from typing import Any

import torch

from ..bodymodels.base import BodyModel

log = logging.getLogger(__name__)


def _rotmats(pose: torch.Tensor, num: int) -> torch.Tensor:
    """(B, J, 3) / (B, 3J) axis-angle or (B, J, 3, 3) matrices -> (B, J, 3, 3)."""
    import roma

    if pose.ndim == 4:
        return pose
    return roma.rotvec_to_rotmat(pose.reshape(pose.shape[0], num, 3))


class KeypointModel:
    """Keypoints (B, K, 3), metres, in the body model's frame with its root rotation and without ``trans``.

    ``prepare(shape)`` (detached (B, S)) returns a context valid near that shape; ``keypoints(pose, shape, ctx)``
    takes ``pose`` (B, J, 3) axis-angle or (B, J, 3, 3) matrices in the body model's forward convention.
    ``bones_used``: pose rotations that move some keypoint (indices into ``pose[:, j]``); ``relevance`` (J,): for
    each pose rotation, the largest share of a keypoint's skinning weight carried by the bone and its descendants
    (1 where unknown): bones below ~0.1 (fingers and toes for body keypoints) are left out of a fit.
    """

    body_model: BodyModel
    regressor: torch.Tensor
    bones_used: list[int]
    relevance: torch.Tensor

    def prepare(self, shape: torch.Tensor) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def keypoints(self, pose: torch.Tensor, shape: torch.Tensor, ctx: Any) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def exact(self, pose: torch.Tensor, shape: torch.Tensor, trans: torch.Tensor | None = None):
        """The full forward: (BodyModelOutput, keypoints (B, K, 3)), with ``trans`` added."""
        if pose.ndim == 3:
            pose = pose.reshape(pose.shape[0], -1)
        out = self.body_model(pose=pose, shape=shape, trans=trans)
        return out, torch.matmul(self.regressor.to(out.vertices_m.dtype), out.vertices_m)


class GenericKeypointModel(KeypointModel):
    """Any body model: the full forward at every step (SMPL/MANO's is a few milliseconds)."""

    def __init__(self, body_model: BodyModel, regressor: torch.Tensor) -> None:
        self.body_model = body_model
        self.regressor = regressor
        self.bones_used = list(range(body_model.num_pose_rotations))
        self.relevance = torch.ones(body_model.num_pose_rotations)

    def prepare(self, shape: torch.Tensor) -> None:
        return None

    def keypoints(self, pose: torch.Tensor, shape: torch.Tensor, ctx: Any) -> torch.Tensor:
        return self.exact(pose, shape)[1]


class AnnyKeypointModel(KeypointModel):
    """Anny body or hand keypoints through the skinning moments (module docstring), with a linearised shape."""

    FD_STEP = 0.02  # phenotype step of the finite-difference Jacobian
    REST_CACHE = 16  # rest models kept per shape for the exact forward (one per recent person; ~0.2 MB each)

    def __init__(self, body_model: BodyModel, regressor: torch.Tensor) -> None:
        from anny.skinning import skinning
        from anny.utils import kinematics

        self.body_model = body_model
        self.regressor = regressor
        anny_model = body_model.anny
        self.anny = anny_model
        device = regressor.device
        support = (regressor.abs().sum(0) > 0).nonzero().flatten()
        vertex_ids = getattr(body_model, "vertex_ids", None)
        self.full_ids = (vertex_ids[support] if vertex_ids is not None else support).to(device)
        weights = skinning.dense_bone_weights(anny_model.vertex_bone_weights[self.full_ids],
                                              anny_model.vertex_bone_indices[self.full_ids],
                                              anny_model.bone_count).to(device=device, dtype=torch.float32)
        reg = regressor[:, support].float()
        influence = reg @ weights  # (K, J): c_kj
        parents = [int(p) for p in anny_model.bone_parents]
        used = set((influence.abs().sum(0) > 0).nonzero().flatten().tolist())
        bones = set()
        for b in used:
            while b >= 0 and b not in bones:
                bones.add(b)
                b = parents[b]
        self.bones = sorted(bones)  # root (0) first
        index = {b: i for i, b in enumerate(self.bones)}
        sub_parents = [-1] + [index[parents[b]] for b in self.bones[1:]]
        levels, chain = kinematics.get_kinematic_chain(sub_parents)
        self.chain = (levels, chain.to(device))
        self.forward_kinematic = kinematics.forward_kinematic
        self.bones_used = self.bones
        self.influence = influence[:, self.bones].contiguous()  # (K, Jp)
        carried = self.influence.clone()

        def depth(i: int) -> int:
            return 0 if i == 0 else 1 + depth(sub_parents[i])

        for i in sorted(range(1, len(self.bones)), key=depth, reverse=True):  # leaves first
            carried[:, sub_parents[i]] += carried[:, i]
        self.relevance = torch.zeros(body_model.num_pose_rotations)
        self.relevance[self.bones] = carried.max(0).values.cpu()
        reg_weights = reg[:, :, None] * weights[None, :, self.bones]  # (K, S, Jp), ~0.3 % non-zero (body)
        k_index, s_index, j_index = reg_weights.nonzero(as_tuple=True)
        self.moment_terms = (s_index, k_index * len(self.bones) + j_index, reg_weights[k_index, s_index, j_index])
        self.bone_index = torch.tensor(self.bones, device=device)
        ref = anny_model.reference_bone_orientations
        self.reference = None if ref is None else ref[self.bone_index].float()
        self.parameterization = anny_model.pose_parameterization
        self.corner = torch.zeros(4, 4, device=device)
        self.corner[3, 3] = 1.0
        self.mirror = torch.tensor([-1.0, 1.0, 1.0], device=device) if getattr(body_model, "mirror_x", False) else None
        self.max_error_m = self._self_check()

    def _rest(self, shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact rest skeleton (B, Jp, 4, 4) and moments m (B, K, Jp, 3) for phenotypes (B, 6)."""
        a = self.anny
        _, phen, local, facial = a.get_tensor_inputs(None, shape.float(), None, None)
        coeffs = a._get_phenotype_blendshape_coefficients(phen, local, facial)
        rest = a.get_rest_model(coeffs)
        verts = rest["rest_vertices"][:, self.full_ids].float()
        vertex, target, weight = self.moment_terms  # m_kj = sum_s R_ks w_sj v_s over the non-zero terms only
        terms = verts[:, vertex] * weight[:, None]  # (B, T, 3)
        moments = verts.new_zeros(verts.shape[0], self.influence.shape[0] * len(self.bones), 3)
        moments.index_add_(1, target, terms)
        moments = moments.reshape(verts.shape[0], self.influence.shape[0], len(self.bones), 3)
        return rest["rest_bone_poses"][:, self.bone_index].float(), moments

    def exact(self, pose: torch.Tensor, shape: torch.Tensor, trans: torch.Tensor | None = None):
        """:meth:`KeypointModel.exact` (the body model's own forward, the same numbers), with Anny's rest model
        (phenotype blendshapes and bone frames: ~8 of ~15 ms CPU per person) kept per shape, the ``REST_CACHE``
        most recently used: a video's person keeps the shape of their cold fit across warm fits
        (``FitConfig.warm_shape``), and their outputs then only pose and skin the mesh. Inputs that need
        gradients take the uncached forward."""
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (pose, shape, trans)):
            return super().exact(pose, shape, trans)
        from ..bodymodels.anny import _pose_to_delta
        from ..bodymodels.base import BodyModelOutput

        with torch.no_grad():
            model, anny = self.body_model, self.anny
            shape = shape.to(device=self.regressor.device, dtype=torch.float32)
            batch = shape.shape[0]
            cache = self.__dict__.setdefault("_rest_cache", {})
            keys = [shape[b].cpu().numpy().tobytes() for b in range(batch)]
            missing = sorted({k: b for b, k in enumerate(keys) if k not in cache}.values())
            if missing:
                _, phen, local, facial = anny.get_tensor_inputs(None, shape[missing], None, None)
                rest = anny.get_rest_model(anny._get_phenotype_blendshape_coefficients(phen, local, facial))
                for i, b in enumerate(missing):
                    cache[keys[b]] = (rest["rest_vertices"][i], rest["rest_bone_poses"][i])
            rest_vertices = torch.stack([cache[k][0] for k in keys])
            rest_poses = torch.stack([cache[k][1] for k in keys])
            for k in keys:  # most recently used last; the oldest dropped
                cache[k] = cache.pop(k)
            while len(cache) > self.REST_CACHE:
                cache.pop(next(iter(cache)))
            if pose.ndim == 3:
                pose = pose.reshape(batch, -1)
            delta = _pose_to_delta(pose.to(device=rest_poses.device, dtype=torch.float32), model.num_bones)
            transforms, _ = anny.get_bone_transforms(delta, rest_poses)
            vertices = anny.get_skinned_vertices(rest_vertices, transforms).to(torch.float32)
            if getattr(model, "vertex_ids", None) is not None:
                vertices = vertices[:, model.vertex_ids]
            if getattr(model, "mirror_x", False):
                vertices = vertices * vertices.new_tensor([-1.0, 1.0, 1.0])
            if trans is not None:
                vertices = vertices + trans.to(vertices).reshape(batch, 1, 3)
            out = BodyModelOutput(vertices_m=vertices, joints_m=model.regress_joints(vertices))
            return out, torch.matmul(self.regressor.to(vertices.dtype), vertices)

    @torch.no_grad()
    def prepare(self, shape: torch.Tensor) -> dict[str, torch.Tensor]:
        """Linearise the rest skeleton and moments around ``shape`` (B, 6): value and Jacobian per person."""
        shape = shape.detach().float()
        batch, dims = shape.shape
        # one-sided steps pointing into [0, 1] so that the difference never leaves the phenotype range
        step = torch.where(shape < 0.5, self.FD_STEP, -self.FD_STEP)
        probes = shape[:, None, :].repeat(1, dims + 1, 1)
        probes[:, 1:] += torch.diag_embed(step)
        poses, moments = self._rest(probes.reshape(-1, dims))
        poses = poses.reshape(batch, dims + 1, *poses.shape[1:])
        moments = moments.reshape(batch, dims + 1, *moments.shape[1:])
        inv = (1.0 / step)
        d_poses = (poses[:, 1:] - poses[:, :1]) * inv.reshape(batch, dims, 1, 1, 1)
        d_moments = (moments[:, 1:] - moments[:, :1]) * inv.reshape(batch, dims, 1, 1, 1)
        return {"shape0": shape, "poses0": poses[:, 0], "d_poses": d_poses, "moments0": moments[:, 0],
                "d_moments": d_moments}

    def keypoints(self, pose: torch.Tensor, shape: torch.Tensor, ctx: dict[str, torch.Tensor]) -> torch.Tensor:
        rot = _rotmats(pose, self.body_model.num_pose_rotations)[:, self.bone_index].float()
        return self.keypoints_of_bones(rot, shape, ctx)

    def keypoints_of_bones(self, rot: torch.Tensor, shape: torch.Tensor, ctx: dict[str, torch.Tensor]) -> torch.Tensor:
        """:meth:`keypoints` from the rotations (B, Jp, 3, 3) of ``self.bones`` only (the others do not matter)."""
        delta_s = (shape.float() - ctx["shape0"])
        rest_poses = ctx["poses0"] + torch.einsum("bs,bsjxy->bjxy", delta_s, ctx["d_poses"])
        moments = ctx["moments0"] + torch.einsum("bs,bskjd->bkjd", delta_s, ctx["d_moments"])
        delta = torch.nn.functional.pad(rot, (0, 1, 0, 1)) + self.corner  # homogeneous [R 0; 0 1]
        transforms, _ = self.forward_kinematic(self.chain, rest_poses, delta, self.parameterization, self.reference)
        kp = torch.einsum("bjxy,bkjy->bkx", transforms[..., :3, :3], moments) + torch.einsum(
            "kj,bjx->bkx", self.influence, transforms[..., :3, 3])
        return kp * self.mirror if self.mirror is not None else kp

    # -- the reduced chain: only the optimised bones (module docstring, "Fixed bones folded") --------------------

    def reduced(self, bones: list[int] | tuple[int, ...]) -> "_ReducedChain | None":
        """The structure of the chain reduced to the root and ``bones`` (pose-rotation indices, the bones a fit
        optimises; the others keep fixed rotations and are folded into their nearest optimised ancestor), cached
        per bone list; None where Anny's pose parameterisation is not 'local-bone' (then use :meth:`keypoints`)."""
        key = tuple(int(b) for b in bones)
        cache = self.__dict__.setdefault("_reduced", {})
        if key not in cache:
            cache[key] = _ReducedChain(self, key) if self.parameterization == "local-bone" else None
        return cache[key]

    @torch.no_grad()
    def prepare_reduced(self, chain: "_ReducedChain", shape: torch.Tensor,
                        base: torch.Tensor) -> dict[str, torch.Tensor]:
        """Linearise the reduced chain around ``shape`` (B, 6) with the fixed bones at ``base`` (B, J, 3, 3)
        rotations (pose-rotation order; the optimised bones' entries are ignored): per person, the value and the
        finite-difference Jacobian (as :meth:`prepare`) of each optimised bone's constant transform ``G`` (from its
        reduced parent's posed frame, before its own rotation) and of the folded moments."""
        shape = shape.detach().float()
        batch, dims = shape.shape
        step = torch.where(shape < 0.5, self.FD_STEP, -self.FD_STEP)
        probes = shape[:, None, :].repeat(1, dims + 1, 1)
        probes[:, 1:] += torch.diag_embed(step)
        fixed = base[:, self.bone_index].float().repeat_interleave(dims + 1, 0)
        rest, moments = self._rest(probes.reshape(-1, dims))
        g_rot, g_trans, mu = chain.constants(rest, moments, fixed)
        packed = torch.cat([g_rot.flatten(1), g_trans.flatten(1), mu.flatten(1)], 1)  # (N, M)
        packed = packed.reshape(batch, dims + 1, -1)
        slope = (packed[:, 1:] - packed[:, :1]) / step[..., None]  # (B, S, M)
        return {"shape0": shape, "lin0": packed[:, 0].contiguous(), "d_lin": slope.contiguous()}

    def keypoints_reduced(self, chain: "_ReducedChain", root: torch.Tensor, rot: torch.Tensor, shape: torch.Tensor,
                          ctx: dict[str, torch.Tensor]) -> torch.Tensor:
        """Keypoints (N, K, 3) from the root rotation (N, 3, 3) and the optimised bones' rotations (N, P, 3, 3, in
        the order of ``chain.bones``), with ``ctx`` from :meth:`prepare_reduced` (its rows matching N)."""
        delta = (shape.float() - ctx["shape0"])[:, None]  # (N, 1, S)
        lin = torch.baddbmm(ctx["lin0"][:, None], delta, ctx["d_lin"])[:, 0]  # the linearised constants (N, M)
        kp = chain.keypoints(root, rot, lin)
        return kp * self.mirror if self.mirror is not None else kp

    @torch.no_grad()
    def _self_check(self) -> float:
        params = self.body_model.sample_params(2, torch.Generator().manual_seed(0))
        pose, shape = params["pose"], params["shape"]
        fast = self.keypoints(pose, shape, self.prepare(shape))
        exact = self.exact(pose, shape)[1]
        error = float((fast - exact).norm(dim=-1).max())
        if self.parameterization == "local-bone":  # the reduced chain on every other posed bone
            rot = _rotmats(pose, self.body_model.num_pose_rotations)
            bones = self.bones[1::2]
            chain = self.reduced(bones)
            reduced = self.keypoints_reduced(chain, rot[:, 0], rot[:, list(chain.bones)], shape,
                                             self.prepare_reduced(chain, shape, rot))
            error = max(error, float((reduced - exact).norm(dim=-1).max()))
        return error


class _ReducedChain:
    """Anny's kinematic chain ('local-bone' parameterisation) reduced to the root and the bones a fit optimises.

    Notation of ``anny.utils.kinematics.forward_kinematic``: bone c of parent p has the rest pose [R_c | h_c], the
    reference orientation U_c, and the posed pose W_c = W_p K_c with K_c = L_c [D_c | 0], L_c = [U_p^T U_c |
    U_p^T A_p (h_c - h_p)], A_p = U_p R_p^T (A_root = I), D_c its rotation; W_root = [D_root | 0]. Skinning with the
    regressor gives keypoint k = sum_j V_j mu_kj + c_kj w_j for W_j = [V_j | w_j], with mu_kj = R_j^T (m_kj -
    c_kj h_j) (``AnnyKeypointModel`` docstring for m and c). A bone that is not optimised has a constant D: its pose
    is its nearest optimised ancestor a's times a constant, W_j = W_a F_j, so its terms fold into a's moments, and an
    optimised bone's pose is W_c = W_a G_c [D_c | 0] with G_c = F_parent(c) L_c constant. The chain then runs over
    the optimised bones alone (a body fit: 32 bones and 12 levels instead of 78 and 15)."""

    def __init__(self, model: AnnyKeypointModel, bones: tuple[int, ...]) -> None:
        sub = list(model.bones)  # pose-rotation indices, root first
        position = {b: i for i, b in enumerate(sub)}
        missing = [b for b in bones if b not in position or b == sub[0]]
        if missing:
            raise ValueError(f"bones {missing} are not non-root bones of the keypoint model")
        parents = [int(p) for p in model.anny.bone_parents]
        sub_parent = [-1] + [position[parents[b]] for b in sub[1:]]
        optimised = {0} | {position[b] for b in bones}
        order, children = [0], [[] for _ in sub]  # sub-bones, parents first
        for i in range(1, len(sub)):
            children[sub_parent[i]].append(i)
        for i in order:
            order.extend(children[i])
        anchor = [0] * len(sub)
        for i in order[1:]:
            anchor[i] = i if i in optimised else anchor[sub_parent[i]]
        depth = {0: 0}
        for i in order[1:]:
            if i in optimised:
                depth[i] = depth[anchor[sub_parent[i]]] + 1
        reduced = sorted(optimised, key=lambda i: (depth[i], i))  # root first, then level by level
        index = {i: r for r, i in enumerate(reduced)}
        self.bones = tuple(sub[i] for i in reduced[1:])  # pose-rotation indices of the optimised bones, chain order
        self.reduced = reduced
        self.levels: list[tuple[int, int, torch.Tensor]] = []  # (first, last, parents' positions in the level before)
        first = 1
        device = model.influence.device
        while first < len(reduced):
            level = depth[reduced[first]]
            last = first
            while last < len(reduced) and depth[reduced[last]] == level:
                last += 1
            before = [r for r in range(len(reduced)) if depth[reduced[r]] == level - 1]
            local = [before.index(index[anchor[sub_parent[reduced[r]]]]) for r in range(first, last)]
            self.levels.append((first, last, None if local == list(range(len(before))) else
                                torch.tensor(local, device=device)))
            first = last
        self.anchor = torch.tensor([index[anchor[i]] for i in range(len(sub))], device=device)  # reduced bone of each
        self.influence = model.influence.new_zeros(model.influence.shape[0], len(reduced)).index_add_(
            1, self.anchor, model.influence)  # (K, Jr)
        self.reduced_sub = torch.tensor(reduced, device=device)
        self.parent_index = torch.tensor([0] + sub_parent[1:], device=device)
        self.root_children = torch.tensor([i for i in range(1, len(sub)) if sub_parent[i] == 0], device=device)
        sub_depth = [0] * len(sub)
        for i in order[1:]:
            sub_depth[i] = sub_depth[sub_parent[i]] + 1
        self.sub_levels = []  # per depth of the sub-skeleton: its bones, their parents, those folded (not optimised)
        for level in range(1, max(sub_depth) + 1):
            members = [i for i in order if sub_depth[i] == level]
            self.sub_levels.append((torch.tensor(members, device=device),
                                    torch.tensor([sub_parent[i] for i in members], device=device),
                                    torch.tensor([i for i in members if i not in optimised], dtype=torch.long,
                                                 device=device)))
        self.model = model
        self.corner = torch.tensor([0.0, 0.0, 0.0, 1.0], device=device).expand(1, 1, 1, 4)

    def constants(self, rest: torch.Tensor, moments: torch.Tensor, fixed: torch.Tensor):
        """Exact G rotations (N, P, 3, 3) and translations (N, P, 3) and folded homogeneous moments (N, K, Jr, 4),
        from the sub-skeleton's rest poses (N, Js, 4, 4), moments (N, K, Js, 3) and rotations (N, Js, 3, 3) (those of
        the optimised bones are ignored)."""
        rot, head = rest[..., :3, :3], rest[..., :3, 3]
        ref = self.model.reference
        ref = rot if ref is None else ref.expand_as(rot)
        num, n_sub = rot.shape[:2]
        parent = self.parent_index
        # L_c for every sub-bone at once (the root's row is unused)
        up_t = ref[:, parent].transpose(-1, -2)
        align = ref[:, parent] @ rot[:, parent].transpose(-1, -2)
        align[:, self.root_children] = torch.eye(3, device=rot.device)  # A_root = I
        l_rot = up_t @ ref
        l_trans = (up_t @ (align @ (head - head[:, parent])[..., None]))[..., 0]
        # F_j level by level (parents first): identity for optimised bones, F_p L_j [D_j | 0] for the others
        f_rot = torch.eye(3, device=rot.device).expand(num, n_sub, 3, 3).clone()
        f_trans = torch.zeros(num, n_sub, 3, device=rot.device)
        c_rot, c_trans = torch.empty_like(l_rot), torch.empty_like(l_trans)
        for bones, parents, fold in self.sub_levels:
            c_rot[:, bones] = f_rot[:, parents] @ l_rot[:, bones]  # F_p L_c
            c_trans[:, bones] = (f_rot[:, parents] @ l_trans[:, bones, :, None])[..., 0] + f_trans[:, parents]
            if len(fold):
                f_rot[:, fold] = c_rot[:, fold] @ fixed[:, fold]
                f_trans[:, fold] = c_trans[:, fold]
        infl = self.model.influence  # (K, Js)
        mu = torch.einsum("njyx,nkjy->nkjx", rot, moments - infl[None, :, :, None] * head[:, None])  # R^T (m - c h)
        folded = torch.einsum("njxy,nkjy->nkjx", f_rot, mu) + infl[None, :, :, None] * f_trans[:, None]
        mu_r = folded.new_zeros(num, folded.shape[1], len(self.reduced), 3).index_add_(2, self.anchor, folded)
        mu_h = torch.cat([mu_r, self.influence[None, :, :, None].expand(num, -1, -1, 1)], -1)
        order = self.reduced_sub[1:]
        return c_rot[:, order], c_trans[:, order], mu_h

    def keypoints(self, root: torch.Tensor, rot: torch.Tensor, lin: torch.Tensor) -> torch.Tensor:
        """(N, K, 3) keypoints: root (N, 3, 3), rotations (N, P, 3, 3) of ``self.bones``, ``lin`` (N, M) the
        constants of :meth:`constants` flattened and concatenated (G rotations, G translations, moments).
        Differentiable in all three (:class:`_ChainKeypoints`: one autograd node with a hand-written backward)."""
        return _ChainKeypoints.apply(root, rot, lin, self)

    def forward_pass(self, root: torch.Tensor, rot: torch.Tensor, lin: torch.Tensor):
        """:meth:`keypoints` without autograd, and what its backward needs: (keypoints, saved)."""
        num, bones = rot.shape[:2]
        g_rot = lin[:, :bones * 9].reshape(num, bones, 3, 3)
        g_trans = lin[:, bones * 9:bones * 12].reshape(num, bones, 3, 1)
        mu = lin[:, bones * 12:].reshape(num, -1, len(self.reduced) * 4)  # (N, K, Jr 4)
        corner = lin.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(num, bones, 1, 4)
        local = torch.cat([torch.cat([g_rot @ rot, g_trans], -1), corner], -2)  # (N, P, 4, 4): G_c [D_c | 0]
        poses = [torch.cat([root, root.new_zeros(num, 3, 1)], -1)[:, None]]  # W_root (N, 1, 3, 4)
        parent_poses = []
        for first, last, parents in self.levels:
            parent_poses.append(self._parents(poses[-1], parents, last - first))
            poses.append(parent_poses[-1] @ local[:, first - 1:last - 1])
        stacked = torch.cat(poses, 1).transpose(-1, -2).reshape(num, -1, 3)  # (N, Jr 4, 3)
        return mu @ stacked, (rot, g_rot, local, parent_poses, mu, stacked)

    @staticmethod
    def _parents(previous: torch.Tensor, parents: torch.Tensor | None, count: int) -> torch.Tensor:
        """The parents' poses (N, n, 3, 4) of a level from the level before's (N, m, 3, 4)."""
        if parents is None:  # each bone of the level before has one child here, in order
            return previous
        if previous.shape[1] == 1:  # all children of one bone
            return previous.expand(previous.shape[0], count, 3, 4)
        return previous[:, parents]

    def backward_pass(self, saved, grad: torch.Tensor, need: tuple[bool, bool, bool]):
        """Gradients of :meth:`forward_pass`'s keypoints (N, K, 3) -> (root, rot, lin) (None where not ``need``ed):
        the chain rule through the products X_c = X_parent L_c, level by level from the leaves."""
        rot, g_rot, local, parent_poses, mu, stacked = saved
        num, bones = rot.shape[:2]
        d_mu = grad @ stacked.transpose(1, 2)  # (N, K, Jr 4)
        d_poses = (mu.transpose(1, 2) @ grad).reshape(num, -1, 4, 3).transpose(-1, -2).contiguous()  # (N, Jr, 3, 4)
        spans = [(0, 1)] + [(first, last) for first, last, _ in self.levels]
        for level in range(len(self.levels) - 1, -1, -1):  # accumulate each pose's gradient, leaves first
            first, last, parents = self.levels[level]
            before = spans[level]
            d_parent = d_poses[:, first:last] @ local[:, first - 1:last - 1].transpose(-1, -2)
            if parents is None:
                d_poses[:, before[0]:before[1]] += d_parent
            elif before[1] - before[0] == 1:
                d_poses[:, before[0]:before[1]] += d_parent.sum(1, keepdim=True)
            else:
                d_poses[:, before[0]:before[1]].index_add_(1, parents, d_parent)
        d_local = torch.cat(parent_poses, 1).transpose(-1, -2) @ d_poses[:, 1:]  # (N, P, 4, 4)
        d_root = d_poses[:, 0, :, :3] if need[0] else None
        d_rot = d_lin = None
        d_b = d_local[..., :3, :3]
        if need[1]:
            d_rot = g_rot.transpose(-1, -2) @ d_b
        if need[2]:
            d_lin = torch.cat([(d_b @ rot.transpose(-1, -2)).reshape(num, -1), d_local[..., :3, 3].reshape(num, -1),
                               d_mu.reshape(num, -1)], 1)
        return d_root, d_rot, d_lin


class _ChainKeypoints(torch.autograd.Function):
    """:meth:`_ReducedChain.keypoints` as one autograd node: a kinematic chain of ~12 levels is ~120 small
    autograd nodes, whose bookkeeping cost more than their arithmetic; the backward is written out instead
    (:meth:`_ReducedChain.backward_pass`, checked against autograd with ``torch.autograd.gradcheck`` in the tests)."""

    @staticmethod
    def forward(ctx, root, rot, lin, chain):
        kp, saved = chain.forward_pass(root, rot, lin)
        ctx.saved = saved
        ctx.chain = chain
        return kp

    @staticmethod
    def backward(ctx, grad):
        d_root, d_rot, d_lin = ctx.chain.backward_pass(ctx.saved, grad.contiguous(), ctx.needs_input_grad[:3])
        return d_root, d_rot, d_lin, None


MAX_FAST_ERROR_M = 1e-4


def _model_cache(body_model: BodyModel) -> dict:
    """A dict kept on the body model instance for what fitting derives from it (it dies with the model)."""
    return body_model.__dict__.setdefault("_i2lmesh_fitting_cache", {})


def keypoint_model(body_model: BodyModel, regressor: torch.Tensor, key: str) -> KeypointModel:
    """The fastest exact :class:`KeypointModel` for ``body_model`` and a (K, V) ``regressor``, cached per model,
    keypoint set ``key``, device and regressor. Anny models get :class:`AnnyKeypointModel` unless its self-check
    (keypoints at the linearisation point vs. the full forward) is off by more than 0.1 mm, which logs a warning
    and falls back to :class:`GenericKeypointModel`."""
    device = body_model.joint_regressor.device
    per_model = _model_cache(body_model)
    cache_key = ("keypoint_model", key, str(device), regressor.data_ptr())
    if cache_key in per_model:
        return per_model[cache_key]
    model: KeypointModel = GenericKeypointModel(body_model, regressor)
    if getattr(body_model, "anny", None) is not None:
        try:
            fast = AnnyKeypointModel(body_model, regressor)
            if fast.max_error_m <= MAX_FAST_ERROR_M:
                model = fast
            else:
                log.warning("fitting: Anny keypoint shortcut off by %.2g m; using the full forward", fast.max_error_m)
        except (AttributeError, TypeError, RuntimeError, ValueError) as exc:  # another anny version
            log.warning("fitting: Anny keypoint shortcut unavailable (%s); using the full forward", exc)
    per_model[cache_key] = model
    return model


__all__ = ["KeypointModel", "GenericKeypointModel", "AnnyKeypointModel", "keypoint_model"]
