"""Engineering test functions for the demo models and the accuracy benchmark.

The four classics (borehole, OTL circuit, piston, wing weight) and the screening and sensitivity
benchmarks (Ishigami, Friedman, Welch) follow the Virtual Library of Simulation Experiments
(Surjanovic & Bingham, https://www.sfu.ca/~ssurjano/), with its input ranges and formulas.
``thermal_actuator`` and ``surface`` are demo maps designed here: a smooth two-output physical
model and a kinked surface that suits ReLU networks. ``periodic8`` (eight angles, interacting
periodic terms) and ``sparse30`` (30 inputs, 4 of them active) are benchmark cases designed here
for what the classics lack: periodic responses and wide tables with few active inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import qmc

from training.errors import ParameterError

__all__ = ["FUNCTIONS", "TestFunction"]


@dataclass(frozen=True)
class TestFunction:
    """A vectorised test function with named, bounded inputs and named outputs.

    Attributes
    ----------
    name : str
    inputs : tuple of (name, unit, low, high)
        The input columns in order, with the range they are sampled from.
    outputs : tuple of (name, unit)
        The output columns in order.
    fn : callable
        ``fn(*columns) -> output or tuple of outputs``, one 1-D float64 array per column.
    description : str
        One line for model cards.
    """

    # Not a pytest test class, despite the name.
    __test__ = False

    name: str
    inputs: tuple[tuple[str, str, float, float], ...]
    outputs: tuple[tuple[str, str], ...]
    fn: Callable[..., np.ndarray | tuple[np.ndarray, ...]]
    description: str = ""

    @property
    def n_inputs(self) -> int:
        return len(self.inputs)

    @property
    def n_outputs(self) -> int:
        return len(self.outputs)

    @property
    def lower(self) -> np.ndarray:
        return np.array([low for _, _, low, _ in self.inputs], dtype=np.float64)

    @property
    def upper(self) -> np.ndarray:
        return np.array([high for _, _, _, high in self.inputs], dtype=np.float64)

    def __call__(self, X) -> np.ndarray:
        """Evaluate on ``X`` of shape (n, n_inputs); returns float64 of shape (n, n_outputs)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ParameterError(
                f"{self.name} expects X of shape (n, {self.n_inputs}), got {X.shape}")
        result = self.fn(*X.T)
        columns = result if isinstance(result, tuple) else (result,)
        return np.column_stack([np.broadcast_to(c, X.shape[:1]) for c in columns])

    def sample(self, n: int, method: str = "lhs", seed: int | None = None) -> np.ndarray:
        """Draw ``n`` input rows inside the ranges.

        Parameters
        ----------
        n : int
            Number of rows.
        method : {"lhs", "uniform"}
            Latin hypercube (scrambled, scipy.stats.qmc) or independent uniform draws.
        seed : int or None
            Seed for reproducible samples.

        Returns
        -------
        ndarray of shape (n, n_inputs)
        """
        if method == "lhs":
            unit = qmc.LatinHypercube(d=self.n_inputs, rng=seed).random(n)
        elif method == "uniform":
            unit = np.random.default_rng(seed).random((n, self.n_inputs))
        else:
            raise ParameterError(f"unknown sampling method {method!r}; use 'lhs' or 'uniform'")
        return qmc.scale(unit, self.lower, self.upper)


def borehole(rw, r, Tu, Hu, Tl, Hl, L, Kw):
    """Water flow rate through a borehole between two aquifers (Harper & Gupta 1983)."""
    log_ratio = np.log(r / rw)
    return (2 * np.pi * Tu * (Hu - Hl)) / (
        log_ratio * (1 + 2 * L * Tu / (log_ratio * rw**2 * Kw) + Tu / Tl)
    )


def otl_circuit(Rb1, Rb2, Rf, Rc1, Rc2, beta):
    """Midpoint voltage of an output-transformerless push-pull circuit (Ben-Ari & Steinberg)."""
    vb1 = 12 * Rb2 / (Rb1 + Rb2)
    gain = beta * (Rc2 + 9)
    denom = gain + Rf
    return (vb1 + 0.74) * gain / denom + 11.35 * Rf / denom + 0.74 * Rf * gain / (denom * Rc1)


def piston(M, S, V0, k, P0, Ta, T0):
    """Cycle time of a piston moving in a cylinder (Kenett & Zacks 1998)."""
    a = P0 * S + 19.62 * M - k * V0 / S
    v = S / (2 * k) * (np.sqrt(a**2 + 4 * k * P0 * V0 * Ta / T0) - a)
    return 2 * np.pi * np.sqrt(M / (k + S**2 * P0 * V0 * Ta / (T0 * v**2)))


def wing_weight(Sw, Wfw, A, sweep, q, taper, tc, Nz, Wdg, Wp):
    """Weight of a light-aircraft wing (Forrester et al. 2008, after Raymer); sweep in degrees."""
    cos_sweep = np.cos(np.deg2rad(sweep))
    return (
        0.036
        * Sw**0.758
        * Wfw**0.0035
        * (A / cos_sweep**2) ** 0.6
        * q**0.006
        * taper**0.04
        * (100 * tc / cos_sweep) ** -0.3
        * (Nz * Wdg) ** 0.49
        + Sw * Wp
    )


# Electrothermal chevron actuator: polysilicon arms, both ends anchored at the ambient temperature,
# Joule-heated by the applied voltage and cooled by conduction to the anchors and through the air
# gap to the substrate. Resistivity rises linearly with temperature.
_RHO0 = 1e-4  # resistivity at ambient, ohm m
_XI = 1e-3  # temperature coefficient of resistivity, 1/K
_K_SI = 30.0  # thermal conductivity of polysilicon, W/(m K)
_ALPHA = 2.6e-6  # thermal expansion coefficient, 1/K
_M2 = 0.026 * 2.0 / (2e-6 * _K_SI * 2e-6)  # fin parameter m^2: air k * shape / (gap k thick), 1/m^2
_THETA = math.radians(1.5)  # chevron pre-bend angle
_T_AMBIENT = 300.0  # K


def thermal_actuator(V, L_um):
    """Apex displacement (um) and peak temperature (K) of an electrothermal chevron actuator.

    The steady 1-D fin equation with uniform Joule heating ``V**2 / (rho L**2)`` gives the mean and
    peak temperature rise in closed form; evaluating the resistivity at the mean temperature turns
    the mean rise into the root of a quadratic. The arm's thermal elongation is turned into apex
    motion by the exact chevron geometry.
    """
    L = L_um * 1e-6
    u = 0.5 * np.sqrt(_M2) * L
    mean_shape = (1 - np.tanh(u) / u) / (_K_SI * _M2)
    peak_over_mean = (1 - 1 / np.cosh(u)) / (1 - np.tanh(u) / u)
    c = V**2 * mean_shape / (_RHO0 * L**2)
    mean_rise = (np.sqrt(1 + 4 * _XI * c) - 1) / (2 * _XI)
    arm = L * (1 + _ALPHA * mean_rise)
    apex = np.sqrt(arm**2 - (L * math.cos(_THETA)) ** 2) - L * math.sin(_THETA)
    return apex * 1e6, _T_AMBIENT + mean_rise * peak_over_mean


def surface(x, y):
    """A kinked height map: a diamond pyramid, a V-shaped valley and a ramp up to a terrace.

    Piecewise linear apart from a gentle tilt, so ReLU hidden layers with a linear output fit it
    well while smooth activations round its ridges off.
    """
    pyramid = 2.0 * np.maximum(0.0, 1.0 - np.abs(x - 0.6) - np.abs(y + 0.4))
    valley = 0.5 * np.abs(x + y + 1.0)
    terrace = np.clip(1.5 * (y - x) - 1.0, 0.0, 1.0)
    return pyramid + valley + terrace + 0.1 * x


def ishigami(x1, x2, x3):
    """Ishigami & Homma (1990), a = 7, b = 0.1: strongly non-linear and non-monotonic."""
    return np.sin(x1) + 7.0 * np.sin(x2) ** 2 + 0.1 * x3**4 * np.sin(x1)


def friedman(*x):
    """Friedman (1991): ten inputs in [0, 1], of which the last five do nothing."""
    return (10.0 * np.sin(np.pi * x[0] * x[1]) + 20.0 * (x[2] - 0.5) ** 2 + 10.0 * x[3]
            + 5.0 * x[4] + 0.0 * x[5])


def welch(*x):
    """Welch et al. (1992): 20 inputs in [-0.5, 0.5]; a few dominate, x8 and x16 do nothing."""
    return (5.0 * x[11] / (1.0 + x[0]) + 5.0 * (x[3] - x[19]) ** 2 + x[4] + 40.0 * x[18] ** 3
            - 5.0 * x[18] + 0.05 * x[1] + 0.08 * x[2] - 0.03 * x[5] + 0.03 * x[6]
            - 0.09 * x[8] - 0.01 * x[9] - 0.07 * x[10] + 0.25 * x[12] ** 2 - 0.04 * x[13]
            + 0.06 * x[14] - 0.01 * x[16] - 0.03 * x[17])


def periodic8(*t):
    """Eight angles in [0, 2 pi): single, sum, difference and product periodic terms."""
    return (np.sin(t[0]) + 0.8 * np.cos(t[1]) + 0.6 * np.sin(t[2] + t[3])
            + 0.5 * np.cos(t[4] - t[5]) + 0.4 * np.sin(2.0 * t[6]) * np.cos(t[7])
            + 0.3 * np.sin(t[0] + t[7]))


def sparse30(*x):
    """30 inputs in [0, 1]; only x1, x8, x16 and x23 act, two of them together."""
    return np.exp(x[0]) * np.sin(3.0 * x[7]) + 2.0 * x[15] ** 2 + np.cos(4.0 * x[22]) * x[7]


FUNCTIONS: dict[str, TestFunction] = {
    f.name: f
    for f in (
        TestFunction(
            "borehole",
            (
                ("rw", "m", 0.05, 0.15),
                ("r", "m", 100.0, 50_000.0),
                ("Tu", "m2/yr", 63_070.0, 115_600.0),
                ("Hu", "m", 990.0, 1110.0),
                ("Tl", "m2/yr", 63.1, 116.0),
                ("Hl", "m", 700.0, 820.0),
                ("L", "m", 1120.0, 1680.0),
                ("Kw", "m/yr", 9855.0, 12_045.0),
            ),
            (("Q", "m3/yr"),),
            borehole,
            "Water flow rate through a borehole (VLSE borehole function).",
        ),
        TestFunction(
            "otl_circuit",
            (
                ("Rb1", "kOhm", 50.0, 150.0),
                ("Rb2", "kOhm", 25.0, 70.0),
                ("Rf", "kOhm", 0.5, 3.0),
                ("Rc1", "kOhm", 1.2, 2.5),
                ("Rc2", "kOhm", 0.25, 1.2),
                ("beta", "1", 50.0, 300.0),
            ),
            (("Vm", "V"),),
            otl_circuit,
            "Midpoint voltage of an OTL push-pull circuit (VLSE OTL circuit function).",
        ),
        TestFunction(
            "piston",
            (
                ("M", "kg", 30.0, 60.0),
                ("S", "m2", 0.005, 0.020),
                ("V0", "m3", 0.002, 0.010),
                ("k", "N/m", 1000.0, 5000.0),
                ("P0", "N/m2", 90_000.0, 110_000.0),
                ("Ta", "K", 290.0, 296.0),
                ("T0", "K", 340.0, 360.0),
            ),
            (("C", "s"),),
            piston,
            "Cycle time of a piston in a cylinder (VLSE piston simulation function).",
        ),
        TestFunction(
            "wing_weight",
            (
                ("Sw", "ft2", 150.0, 200.0),
                ("Wfw", "lb", 220.0, 300.0),
                ("A", "1", 6.0, 10.0),
                ("sweep", "deg", -10.0, 10.0),
                ("q", "lb/ft2", 16.0, 45.0),
                ("taper", "1", 0.5, 1.0),
                ("tc", "1", 0.08, 0.18),
                ("Nz", "1", 2.5, 6.0),
                ("Wdg", "lb", 1700.0, 2500.0),
                ("Wp", "lb/ft2", 0.025, 0.08),
            ),
            (("W", "lb"),),
            wing_weight,
            "Weight of a light-aircraft wing (VLSE wing weight function).",
        ),
        TestFunction(
            "thermal_actuator",
            (("V", "V", 1.0, 5.0), ("L", "um", 100.0, 300.0)),
            (("displacement", "um"), ("T_max", "K")),
            thermal_actuator,
            "Electrothermal chevron actuator: apex displacement and peak temperature.",
        ),
        TestFunction(
            "surface",
            (("x", "m", -2.0, 2.0), ("y", "m", -2.0, 2.0)),
            (("h", "m"),),
            surface,
            "Kinked height map (pyramid, valley, terrace) that suits ReLU networks.",
        ),
        TestFunction(
            "ishigami",
            tuple((f"x{i}", "1", -math.pi, math.pi) for i in (1, 2, 3)),
            (("y", "1"),),
            ishigami,
            "Ishigami function: three inputs, periodic in two, strongly non-linear.",
        ),
        TestFunction(
            "friedman",
            tuple((f"x{i}", "1", 0.0, 1.0) for i in range(1, 11)),
            (("y", "1"),),
            friedman,
            "Friedman function: ten inputs, five of them inactive.",
        ),
        TestFunction(
            "welch",
            tuple((f"x{i}", "1", -0.5, 0.5) for i in range(1, 21)),
            (("y", "1"),),
            welch,
            "Welch screening function: 20 inputs, a few of them dominant.",
        ),
        TestFunction(
            "periodic8",
            tuple((f"t{i}", "rad", 0.0, 2.0 * math.pi) for i in range(1, 9)),
            (("y", "1"),),
            periodic8,
            "Eight interacting angles: a periodic response.",
        ),
        TestFunction(
            "sparse30",
            tuple((f"x{i}", "1", 0.0, 1.0) for i in range(1, 31)),
            (("y", "1"),),
            sparse30,
            "30 inputs of which four act.",
        ),
    )
}
