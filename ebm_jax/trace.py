"""The Jacobian trace (divergence) of a vector field: exactly, and by random probes.

The trace term of score matching (§11.2.2) is the divergence of the score,
:math:`\\operatorname{tr} \\nabla_x s(x) = \\sum_i \\partial s_i / \\partial x_i`.
Computed exactly it costs one Jacobian-vector product (JVP) per dimension,
the cost §11.2.3 blames for score matching failing in high dimension. The
randomised estimators here cost one JVP per probe instead:

.. math::

   \\operatorname{tr} A = \\mathbb{E}_v[v^\\top A v]
   \\quad \\text{whenever} \\quad \\mathbb{E}[v v^\\top] = I,

which holds for Rademacher (:math:`\\pm 1`) and standard Gaussian probes, not
for unit vectors. Every matrix-vector product :math:`A v` with
:math:`A = \\partial v / \\partial x` is a :func:`jax.jvp`; the field is
linearised once (:func:`jax.linearize`) and the linear map is vmapped over
the probes, so no Python loop runs over dimensions or probes.

All functions act on ONE point ``x`` of any shape (the field maps ``x`` to an
array of the same shape, flattened internally where a matrix is needed);
batch them with :func:`jax.vmap`.

References:
  Hutchinson (1989), *A stochastic estimator of the trace of the influence
  matrix for Laplacian smoothing splines*, Communications in Statistics -
  Simulation and Computation 18(3).
  Meyer, Musco, Musco & Woodruff (2021), *Hutch++: optimal stochastic trace
  estimation*, SOSA, arXiv:2010.09649.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ebm_jax._validation import as_floating, check_callable, check_int
from ebm_jax.types import Array, ArrayLike, PRNGKey

VectorFn = Callable[[Array], Array]
"""``x -> v(x)``: a vector field of one point, output of the same shape as ``x``."""

PROBES = ("rademacher", "gaussian")
"""Probe distributions with :math:`\\mathbb{E}[v v^\\top] = I`."""

_HIGHEST = jax.lax.Precision.HIGHEST


def _check_probe(probe: str) -> None:
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")


def _check_vector_fn(vector_fn: VectorFn, x: Array) -> None:
    """``vector_fn`` must map ``x`` to a floating array of ``x``'s shape (``jax.eval_shape``)."""
    check_callable(vector_fn, "vector_fn")
    try:
        out = jax.eval_shape(vector_fn, x)
    except Exception as exc:  # re-raised with the argument named
        raise ValueError(f"vector_fn failed on x of shape {x.shape}: {exc}") from exc
    if not hasattr(out, "shape") or out.shape != x.shape:
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"vector_fn must map x to an array of x's shape {x.shape}, got shape {shape}"
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"vector_fn must return floating-point values, got dtype {out.dtype}")


def sample_probes(
    rng_key: PRNGKey,
    shape: tuple[int, ...],
    num_probes: int,
    probe: str = "rademacher",
    dtype: jnp.dtype | None = None,
) -> Array:
    """Draw ``num_probes`` independent probes :math:`v` with :math:`\\mathbb{E}[v v^\\top] = I`.

    .. math::

       v_i \\overset{\\text{iid}}{\\sim} \\operatorname{Uniform}\\{-1, +1\\}
       \\;\\text{(Rademacher)} \\quad \\text{or} \\quad v \\sim N(0, I)
       \\;\\text{(Gaussian)}.

    Both are isotropic with unit second moment per coordinate, so
    :math:`\\mathbb{E}[v^\\top A v] = \\operatorname{tr} A`. Unit vectors
    (:math:`\\|v\\| = 1`) are NOT valid probes: they would need a factor
    :math:`d`.

    Args:
      rng_key: a JAX PRNG key.
      shape: the shape of one probe (the event shape of the point).
      num_probes: how many independent probes, an int :math:`\\ge 1`.
      probe: ``"rademacher"`` (lower variance, the default) or ``"gaussian"``.
      dtype: floating dtype of the probes; default JAX's default float.

    Returns:
      An array of shape ``(num_probes, *shape)``.

    Examples:
      >>> import jax
      >>> from ebm_jax import trace
      >>> probes = trace.sample_probes(jax.random.key(0), (3,), num_probes=2)
      >>> probes.shape, bool(jax.numpy.all(jax.numpy.abs(probes) == 1.0))
      ((2, 3), True)
    """
    _check_probe(probe)
    num_probes = check_int(num_probes, "num_probes", 1)
    dtype = jnp.result_type(float) if dtype is None else dtype
    full_shape = (num_probes, *shape)
    if probe == "rademacher":
        return jax.random.rademacher(rng_key, full_shape, dtype)
    return jax.random.normal(rng_key, full_shape, dtype)


def value_and_jvps(vector_fn: VectorFn, x: ArrayLike, tangents: Array) -> tuple[Array, Array]:
    """The field :math:`v(x)` and the products :math:`(\\partial v / \\partial x)\\, t_k`.

    .. math:: \\big(v(x),\\; [J t_1, \\dots, J t_K]\\big), \\qquad J = \\partial v / \\partial x.

    The field is linearised once (:func:`jax.linearize`, one forward pass that
    also yields :math:`v(x)`) and the linear map is vmapped over the tangents,
    so :math:`v(x)` is never recomputed (a single tangent takes one plain
    :func:`jax.jvp`). For a score :math:`v = \\nabla f` this
    is forward-over-reverse differentiation: :math:`s(x)` and :math:`\\nabla s\\,
    t` from one pass.

    Args:
      vector_fn: ``x -> v(x)``, output of the same shape as ``x``.
      x: one point, any shape.
      tangents: ``(num_tangents, *x.shape)``.

    Returns:
      ``(v(x), products)`` with ``products`` of shape ``(num_tangents, *x.shape)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax import trace
      >>> value, products = trace.value_and_jvps(lambda x: x**2, jnp.array([1.0, 3.0]), jnp.eye(2))
      >>> value, products
      (Array([1., 9.], dtype=float32), Array([[2., 0.],
             [0., 6.]], dtype=float32))
    """
    point = as_floating(x)
    _check_vector_fn(vector_fn, point)
    tangents = jnp.asarray(tangents, point.dtype)
    if tangents.shape[1:] != point.shape:
        raise ValueError(
            f"tangents must have shape (num_tangents, *x.shape) = (K, *{point.shape}), "
            f"got {tangents.shape}"
        )
    return _value_and_jvps(vector_fn, point, tangents)


def _value_and_jvps(vector_fn: VectorFn, point: Array, tangents: Array) -> tuple[Array, Array]:
    if tangents.shape[0] == 1:
        # A vmap over a single tangent adds a unit axis that slows the matmuls down.
        value, product = jax.jvp(vector_fn, (point,), (tangents[0],))
        return value, product[None]
    value, linear_fn = jax.linearize(vector_fn, point)
    return value, jax.vmap(linear_fn)(tangents)


def _flat_jacobian_diagonal_sum(vector_fn: VectorFn, point: Array) -> tuple[Array, Array]:
    _check_vector_fn(vector_fn, point)
    size = point.size
    flat_fn = lambda flat: vector_fn(flat.reshape(point.shape)).reshape(size)
    value, columns = _value_and_jvps(flat_fn, point.reshape(size), jnp.eye(size, dtype=point.dtype))
    # columns[i] = J e_i, so columns[i, i] = J_ii.
    return value.reshape(point.shape), jnp.trace(columns)


def value_and_exact_divergence(vector_fn: VectorFn, x: ArrayLike) -> tuple[Array, Array]:
    """The field :math:`v(x)` and its exact divergence, from one linearisation.

    .. math:: \\big(v(x),\\; \\operatorname{tr} \\partial v / \\partial x\\big)

    Same cost as :func:`exact_divergence` (:math:`d` JVPs); the value comes free.

    Args:
      vector_fn: ``x -> v(x)``, output of the same shape as ``x``.
      x: one point, any shape.

    Returns:
      ``(v(x), divergence)``, the divergence a scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax import trace
      >>> trace.value_and_exact_divergence(lambda x: x**2, jnp.array([1.0, 3.0]))
      (Array([1., 9.], dtype=float32), Array(8., dtype=float32))
    """
    return _flat_jacobian_diagonal_sum(vector_fn, as_floating(x))


def exact_divergence(vector_fn: VectorFn, x: ArrayLike) -> Array:
    """Exact divergence :math:`\\operatorname{tr} \\partial v / \\partial x` of a vector field.

    .. math::

       \\nabla \\cdot v(x) = \\operatorname{tr} \\frac{\\partial v}{\\partial x}
       = \\sum_{i=1}^{d} e_i^\\top \\frac{\\partial v}{\\partial x} e_i,

    over the :math:`d` entries of the flattened ``x``: one JVP per basis vector
    :math:`e_i`, vmapped (the Jacobian is materialised, :math:`O(d^2)` memory).
    This is the trace term of score matching, eq. (11.2), with
    :math:`v = s = \\nabla_x f`.

    Args:
      vector_fn: ``x -> v(x)``, output of the same shape as ``x``.
      x: one point, any shape (a 2-D event shape is flattened).

    Returns:
      The divergence, a scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> from ebm_jax import trace
      >>> trace.exact_divergence(lambda x: jnp.sin(x), jnp.zeros(3))
      Array(3., dtype=float32)
    """
    return value_and_exact_divergence(vector_fn, x)[1]


def hutchinson_divergence(
    rng_key: PRNGKey,
    vector_fn: VectorFn,
    x: ArrayLike,
    num_probes: int = 1,
    probe: str = "rademacher",
) -> Array:
    """Hutchinson's unbiased estimate of :math:`\\operatorname{tr} \\partial v / \\partial x`.

    .. math::

       \\widehat{\\operatorname{tr}} A = \\frac{1}{K} \\sum_{k=1}^{K} v_k^\\top A v_k,
       \\qquad \\operatorname{Var}[v^\\top A v] =
       \\begin{cases}
       2 \\sum_{i \\ne j} A_{ij}^2 & \\text{Rademacher,} \\\\
       2 \\|A\\|_F^2 & \\text{Gaussian,}
       \\end{cases}

    for symmetric :math:`A` (a score's Jacobian is a Hessian, hence symmetric;
    otherwise read :math:`A` as its symmetric part). The estimate is unbiased
    for every :math:`K`; its variance falls as :math:`1/K`. Costs ``num_probes``
    JVPs (one linearisation, the linear map vmapped over the probes).

    Args:
      rng_key: a JAX PRNG key for the probes.
      vector_fn: ``x -> v(x)``, output of the same shape as ``x``.
      x: one point, any shape.
      num_probes: :math:`K \\ge 1`.
      probe: ``"rademacher"`` or ``"gaussian"`` (see :func:`sample_probes`).

    Returns:
      The estimate, a scalar.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax import trace
      >>> matrix = jnp.diag(jnp.array([1.0, 2.0, 3.0]))
      >>> trace.hutchinson_divergence(jax.random.key(0), lambda x: matrix @ x, jnp.ones(3))
      Array(6., dtype=float32)

    References:
      Hutchinson (1989).
    """
    point = as_floating(x)
    _check_vector_fn(vector_fn, point)
    probes = sample_probes(rng_key, point.shape, num_probes, probe, point.dtype)
    _, products = _value_and_jvps(vector_fn, point, probes)
    quadratic_forms = jnp.sum((probes * products).reshape(probes.shape[0], -1), axis=1)
    return jnp.mean(quadratic_forms)


def hutchpp_divergence(
    rng_key: PRNGKey,
    vector_fn: VectorFn,
    x: ArrayLike,
    num_matvecs: int = 3,
    probe: str = "rademacher",
) -> Array:
    """Hutch++: an unbiased trace estimate that deflates the top of the spectrum.

    With :math:`k = m / 3` sketch probes :math:`S` and :math:`k` residual probes
    :math:`G` (both :math:`d \\times k`, entries as in :func:`sample_probes`),

    .. math::

       Q = \\operatorname{qr}(A S), \\qquad
       \\widehat{\\operatorname{tr}} A = \\operatorname{tr}(Q^\\top A Q)
       + \\frac{3}{m} \\operatorname{tr}\\big(G^\\top (I - Q Q^\\top) A (I - Q Q^\\top) G\\big).

    The first term is exact on the range of :math:`A S`; Hutchinson's estimator
    only sees the deflated remainder, so the estimate is unbiased (for any
    square :math:`A`, since :math:`G` is independent of :math:`Q`) and EXACT
    when :math:`\\operatorname{rank} A \\le m/3` (almost surely for Gaussian
    probes, with high probability for Rademacher ones). For positive
    semi-definite :math:`A` its relative error falls as :math:`1/m` rather than
    Hutchinson's :math:`1/\\sqrt{m}`, a large gain when the spectrum decays.
    Costs exactly ``num_matvecs`` JVPs (:math:`AS`, then :math:`AQ` and
    :math:`A(I - QQ^\\top)G` together), fewer when :math:`m/3 > d`.

    Args:
      rng_key: a JAX PRNG key for :math:`S` and :math:`G`.
      vector_fn: ``x -> v(x)``, output of the same shape as ``x``.
      x: one point, any shape.
      num_matvecs: :math:`m`, a positive multiple of 3 (split equally between
        :math:`S`, :math:`Q` and :math:`G`).
      probe: ``"rademacher"`` or ``"gaussian"``, for both :math:`S` and :math:`G`.

    Returns:
      The estimate, a scalar.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from ebm_jax import trace
      >>> low_rank = jnp.outer(jnp.arange(4.0), jnp.ones(4))  # rank 1, trace 6
      >>> estimate = trace.hutchpp_divergence(
      ...     jax.random.key(0), lambda x: low_rank @ x, jnp.zeros(4), num_matvecs=3
      ... )
      >>> round(float(estimate), 4)
      6.0

    References:
      Meyer, Musco, Musco & Woodruff (2021), arXiv:2010.09649, Algorithm 1.
    """
    num_matvecs = check_int(num_matvecs, "num_matvecs", 3)
    if num_matvecs % 3:
        raise ValueError(f"num_matvecs must be a positive multiple of 3, got {num_matvecs}")
    _check_probe(probe)
    point = as_floating(x)
    _check_vector_fn(vector_fn, point)
    size = point.size
    num_sketch = num_matvecs // 3
    flat_fn = lambda flat: vector_fn(flat.reshape(point.shape)).reshape(size)
    _, matvec = jax.linearize(flat_fn, point.reshape(size))

    sketch_key, residual_key = jax.random.split(rng_key)
    sketch = sample_probes(sketch_key, (size,), num_sketch, probe, point.dtype)
    range_rows = jax.vmap(matvec)(sketch)
    basis, _ = jnp.linalg.qr(range_rows.T)  # (d, min(d, k)), orthonormal columns
    residual_probes = sample_probes(residual_key, (size,), num_sketch, probe, point.dtype)
    projection = jnp.matmul(residual_probes, basis, precision=_HIGHEST)
    deflated_rows = residual_probes - jnp.matmul(projection, basis.T, precision=_HIGHEST)

    # Q and (I - QQᵀ)G do not depend on each other's products: one vmapped pass.
    rows = jnp.concatenate([basis.T, deflated_rows])
    products = jax.vmap(matvec)(rows)
    rank = basis.shape[1]
    low_rank_trace = jnp.sum(basis.T * products[:rank])
    deflated_trace = jnp.sum(deflated_rows * products[rank:]) / num_sketch
    return low_rank_trace + deflated_trace


__all__ = [
    "PROBES",
    "VectorFn",
    "exact_divergence",
    "hutchinson_divergence",
    "hutchpp_divergence",
    "sample_probes",
    "value_and_exact_divergence",
    "value_and_jvps",
]
