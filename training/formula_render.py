"""Render a :class:`training.formula_steps.FormulaGraph` as formulas: one expression per output,
or one named line per unit (the programs are in :mod:`training.formula_code`), and what every
rendering shares: the signature, the literals, the function names of each target.

Numbers are written as the shortest decimal that reads back as the same value in the tensor's
own dtype (``str`` of a numpy scalar): a float32 weight as at most 9 digits, a float64 one (the
input layer, the scaling) as at most 17, so every literal names exactly the weight in the ONNX
file and the code computes the same network in double precision.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.formula_steps import Affine, Elementwise, FormulaError, FormulaGraph

__all__ = ["Port", "Signature", "literal", "render_expression", "render_layered", "translate",
           "wrapped_literal"]

_CALL = re.compile(r"\b(exp|log|tanh|sin|erf|max|min|abs|sqrt)\(")
_DIALECTS = {
    "python": {"exp": "_exp", "log": "_log", "tanh": "math.tanh", "sin": "math.sin",
               "erf": "math.erf", "max": "max", "min": "min", "abs": "abs", "sqrt": "math.sqrt"},
    "c": {"exp": "exp", "log": "log", "tanh": "tanh", "sin": "sin", "erf": "erf", "max": "fmax",
          "min": "fmin", "abs": "fabs", "sqrt": "sqrt"},
}  # fmt: skip
# Names an identifier must not take in any of the three targets (keywords, the functions the
# code calls, COMSOL's constants, the generated variables' own names).
_RESERVED = frozenset(
    keyword.kwlist
    + "abs cos erf exp fabs fmax fmin log math max min sin sqrt sum tanh tuple zip".split()
    + "e eps i j in inf nan out pi row s".split()
    + ("auto break case char const continue default do double else enum extern float for goto if "
       "inline int long register restrict return short signed sizeof static struct switch typedef "
       "union unsigned void volatile while").split()
)  # fmt: skip
_GENERATED = re.compile(r"_.*|[av][0-9]+|h[0-9]+_[0-9]+")


def _identifier(name: str, taken: set[str]) -> str:
    """A name valid in Python, C and COMSOL, unique in ``taken`` (which it joins)."""
    text = re.sub(r"\W", "_", name, flags=re.ASCII).strip("_") or "x"
    if text[0].isdigit():
        text = "x" + text
    while text in _RESERVED or text in taken or _GENERATED.fullmatch(text):
        text += "_"
    taken.add(text)
    return text


@dataclass(frozen=True)
class Port:
    """One input or output: its identifier in the code and what the card says about it."""

    identifier: str
    name: str
    unit: str
    low: float | None = None
    high: float | None = None

    def describe(self) -> str:
        text = self.name + (f" [{self.unit}]" if self.unit else "")
        if self.low is not None:
            text += f", trained on {self.low:.6g} .. {self.high:.6g}"
        return " ".join(text.split())  # no line breaks inside a comment line


@dataclass(frozen=True)
class Signature:
    """The function's name, the model it came from and its inputs and outputs."""

    function: str
    model: str
    version: int
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]

    @classmethod
    def from_card(cls, card: dict[str, Any], path: Path) -> Signature:
        """Read names, units and ranges from a model card."""
        taken: set[str] = set()
        try:
            function = _identifier(str(card["name"]), taken)
            inputs = tuple(
                Port(_identifier(str(s["name"]), taken), str(s["name"]), str(s.get("unit", "")),
                     float(s["min"]), float(s["max"]))
                for s in card["inputs"]
            )  # fmt: skip
            outputs = tuple(
                Port(_identifier(str(s["name"]), taken), str(s["name"]), str(s.get("unit", "")))
                for s in card["outputs"]
            )
            return cls(function, str(card["name"]), int(card["version"]), inputs, outputs)
        except (KeyError, TypeError, ValueError) as exc:
            raise FormulaError(f"{path}/model.json is not a model card: {exc!r}") from None

    def header(self, input_label: Callable[[int, Port], str],
               output_label: Callable[[int, Port], str]) -> list[str]:  # fmt: skip
        """Comment lines naming the model, its inputs and its outputs."""
        return [
            f"Surrogate {self.model!r} version {self.version}, written by `surrogate export`.",
            "Physical units in and out; the input and output scaling is included.",
            "Inputs:",
            *(f"  {input_label(i, p)}: {p.describe()}" for i, p in enumerate(self.inputs)),
            "Outputs:",
            *(f"  {output_label(i, p)}: {p.describe()}" for i, p in enumerate(self.outputs)),
        ]


def literal(value: np.generic) -> str:
    return str(value if isinstance(value, np.floating) else np.float64(value))


def wrapped_literal(value: np.generic) -> str:
    text = literal(value)
    return f"({text})" if text.startswith("-") else text


def _is_atomic(text: str) -> bool:
    """True if ``text`` is one call or one parenthesised group (its first '(' closes last)."""
    start = text.find("(")
    if start < 0 or not re.fullmatch(r"[A-Za-z_.]*", text[:start]):
        return False
    depth = 0
    for index in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return index == len(text) - 1
    return False


def translate(template: str, dialect: str) -> str:
    table = _DIALECTS[dialect]
    return _CALL.sub(lambda match: table[match.group(1)] + "(", template)


def _term_counts(network: FormulaGraph) -> np.ndarray:
    """Numbers and variable references in each output's fully expanded expression."""
    counts = {"v0": np.ones(network.n_inputs)}
    for var, step in network.steps.items():
        if isinstance(step, Affine):
            counts[var] = np.full(step.size, counts[step.source].sum() + len(step.weight[0]) + 1)
            continue
        total = np.full(step.size, float(len(re.findall(r"\d+\.\d+", step.template))))
        for index, operand in enumerate(step.operands):
            uses = step.template.count(f"{{{index}}}")
            total += uses * (counts[operand] if isinstance(operand, str) else 1.0)
        counts[var] = total
    return counts[network.output]


def _signed(term: str) -> str:
    return f" - {term[1:]}" if term.startswith("-") else f" + {term}"


def _expression_row(step: Affine | Elementwise, rows: dict) -> list[tuple[str, bool]]:
    """The expressions of one step's elements, each with whether it needs no parentheses."""

    def wrap(item: tuple[str, bool]) -> str:
        return item[0] if item[1] else f"({item[0]})"

    if isinstance(step, Affine):
        source = [wrap(item) for item in rows[step.source]]
        row = []
        for weights, bias in zip(step.weight, step.bias, strict=True):
            terms = [f"{literal(w)}*{x}" for w, x in zip(weights, source, strict=True)]
            text = terms[0] + "".join(_signed(term) for term in terms[1:])
            row.append((text + (_signed(literal(bias)) if bias else ""), False))
        return row
    atomic = _is_atomic(step.template)
    operands = [
        [item[0] if _is_argument(step.template, index) else wrap(item) for item in rows[op]]
        if isinstance(op, str)
        else [wrapped_literal(op[i % op.size]) for i in range(step.size)]
        for index, op in enumerate(step.operands)
    ]  # fmt: skip
    return [(step.template.format(*args), atomic) for args in zip(*operands, strict=True)]


def _is_argument(template: str, index: int) -> bool:
    """True if operand ``index`` only ever stands alone as a call's argument in ``template``
    (``tanh({0})``, ``max({0}, 0.0)``), where it needs no parentheses of its own."""
    placeholder = f"{{{index}}}"
    pieces = template.split(placeholder)
    return len(pieces) > 1 and all(
        before.endswith(("(", ", ")) and after.startswith((")", ","))
        for before, after in zip(pieces[:-1], pieces[1:], strict=True))


def render_expression(network: FormulaGraph, signature: Signature, *, max_terms: int) -> str:
    """One line ``output(inputs) = expression`` per output, after a ``#`` comment header."""
    terms = int(_term_counts(network).sum())
    if terms > max_terms:
        raise FormulaError(
            f"the expression form of {signature.model!r} would hold {terms} terms (limit "
            f"{max_terms}); export it with --format layered (one line per unit), python or c "
            "instead"
        )
    rows: dict[str, list[tuple[str, bool]]] = {"v0": [(p.identifier, True) for p in
                                                      signature.inputs]}  # fmt: skip
    for var, step in network.steps.items():
        rows[var] = _expression_row(step, rows)
    args = ", ".join(port.identifier for port in signature.inputs)
    header = signature.header(lambda i, p: p.identifier, lambda i, p: p.identifier)
    lines = [f"# {line}" for line in header]
    lines += [
        f"{port.identifier}({args}) = {text}"
        for port, (text, _) in zip(signature.outputs, rows[network.output], strict=True)
    ]
    return "\n".join(lines) + "\n"


def render_layered(network: FormulaGraph, signature: Signature) -> str:
    """One definition per unit, layer by layer, then one per output, after a comment header:
    ``h1_3 = tanh(0.52*V + ...)``, as engineers write a network by hand (and as COMSOL, Excel
    or Modelica take it, one variable at a time). Every value a matrix product reads (the
    scaled inputs, each hidden layer's outputs) becomes a named line; the rest is written
    inline, so each line holds one unit's sum and activation and the text grows with the
    number of weights, never nested like the single expression."""
    feeds_product = {step.source for step in network.steps.values() if isinstance(step, Affine)}
    rows: dict[str, list[tuple[str, bool]]] = {"v0": [(p.identifier, True) for p in
                                                      signature.inputs]}  # fmt: skip
    header = signature.header(lambda i, p: p.identifier, lambda i, p: p.identifier)
    lines = [f"# {line}" for line in header]
    lines.append("# Then h0_<i>, the scaled inputs, h<k>_<j>, unit j of hidden layer k, and the "
                 "outputs.")
    depth = {"v0": 0}  # matrix products on the way from the inputs
    for var, step in network.steps.items():
        rows[var] = _expression_row(step, rows)
        sources = [step.source] if isinstance(step, Affine) else [
            op for op in step.operands if isinstance(op, str)]
        depth[var] = max(depth[source] for source in sources) + isinstance(step, Affine)
        if var in feeds_product and var != network.output:
            names = [f"h{depth[var]}_{unit}" for unit in range(1, step.size + 1)]
            lines += [f"{name} = {text}" for name, (text, _) in zip(names, rows[var],
                                                                     strict=True)]
            rows[var] = [(name, True) for name in names]
    lines += [f"{port.identifier} = {text}"
              for port, (text, _) in zip(signature.outputs, rows[network.output], strict=True)]
    return "\n".join(lines) + "\n"
