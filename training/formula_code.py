"""Render a :class:`training.formula_steps.FormulaGraph` as a program: a Python module that needs
only ``math``, or a C99 file that needs only ``<math.h>``. Literals as in
:mod:`training.formula_render`: every number names exactly the weight in the ONNX file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from training.formula_render import Signature, literal, translate, wrapped_literal
from training.formula_steps import Affine, Elementwise, FormulaError, FormulaGraph

__all__ = ["render_c", "render_c_tangent", "render_python"]

_PYTHON_HELPERS = {
    "_exp": "def _exp(x):\n    try:\n        return math.exp(x)\n"
    "    except OverflowError:\n        return math.inf\n",
    "_log": "def _log(x):\n"
    "    return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)\n",
}

def _python_tuple(values: Sequence, text: Callable = literal) -> str:
    return "(" + ", ".join(text(v) for v in values) + ("," if len(values) == 1 else "") + ")"


def _python_step(var: str, step: Affine | Elementwise, constants: list[str]) -> str:
    """The statement computing ``var``; its tables are appended to ``constants``."""
    if isinstance(step, Affine):
        weight, bias = f"_W{var[1:]}", f"_B{var[1:]}"
        rows = "".join(f"    {_python_tuple(row)},\n" for row in step.weight)
        constants += [f"{weight} = (\n{rows})", f"{bias} = {_python_tuple(step.bias)}"]
        return (f"{var} = [sum(w * a for w, a in zip(row, {step.source})) + b "
                f"for row, b in zip({weight}, {bias})]")  # fmt: skip
    names, iterables, args = [], [], []
    for index, operand in enumerate(step.operands):
        if isinstance(operand, np.ndarray) and operand.size == 1:
            args.append(wrapped_literal(operand[0]))
            continue
        if isinstance(operand, np.ndarray):
            table = f"_C{var[1:]}_{index}"
            constants.append(f"{table} = {_python_tuple(operand)}")
            operand = table
        names.append(f"a{index}")
        iterables.append(operand)
        args.append(f"a{index}")
    source = iterables[0] if len(iterables) == 1 else f"zip({', '.join(iterables)})"
    text = translate(step.template, "python").format(*args)
    return f"{var} = [{text} for {', '.join(names)} in {source}]"


def render_python(network: FormulaGraph, signature: Signature) -> str:
    """A module with one function ``<model>(<inputs>) -> tuple`` that needs only ``math``."""
    constants: list[str] = []
    body = [f"v0 = {_python_tuple([p.identifier for p in signature.inputs], str)}"]
    body += [_python_step(var, step, constants) for var, step in network.steps.items()]
    body.append(f"return tuple({network.output})")
    code = "\n".join(body)
    helpers = [text for name, text in _PYTHON_HELPERS.items() if f"{name}(" in code]
    imports = ["import math"] if "math." in code + "".join(helpers) else []
    header = signature.header(lambda i, p: p.identifier, lambda i, p: f"result[{i}]")
    outputs = ", ".join(p.identifier for p in signature.outputs)
    args = ", ".join(p.identifier for p in signature.inputs)
    function = [
        f"def {signature.function}({args}):",
        f'    """Return ({outputs}{"," if len(signature.outputs) == 1 else ""}) '
        "in physical units; see the comments above.\"\"\"",
        *(f"    {line}" for line in code.splitlines()),
    ]
    top = ["\n".join(f"# {line}" for line in header), "\n".join(imports), "\n".join(constants)]
    definitions = [*(text.rstrip("\n") for text in helpers), "\n".join(function)]
    return "\n\n".join(part for part in top if part) + "\n\n\n" + "\n\n\n".join(definitions) + "\n"


def _c_array(values: Sequence) -> str:
    return "{" + ", ".join(literal(v) for v in values) + "}"


def _c_ref(source: str, index: str) -> str:
    return f"{'in' if source == 'v0' else source}[{index}]"


def _c_affine_names(var: str, prefix: str) -> tuple[str, str]:
    """The names of an affine step's weight and bias tables."""
    return f"{prefix}_W{var[1:]}", f"{prefix}_B{var[1:]}"


def _c_operands(var: str, step: Elementwise, prefix: str,
                constants: list[str] | None) -> list[str]:  # fmt: skip
    """The C text of each operand of ``step`` at element ``i``; the definitions of its tables
    are appended to ``constants`` (None: they are defined already)."""
    args = []
    for index, operand in enumerate(step.operands):
        if isinstance(operand, str):
            args.append(_c_ref(operand, "i"))
        elif operand.size == 1:
            args.append(wrapped_literal(operand[0]))
        else:
            table = f"{prefix}_C{var[1:]}_{index}"
            if constants is not None:
                constants.append(
                    f"static const double {table}[{operand.size}] = {_c_array(operand)};")
            args.append(f"{table}[i]")
    return args


def _c_step(var: str, step: Affine | Elementwise, prefix: str, constants: list[str]) -> list[str]:
    """The statements computing ``var``; its tables are appended to ``constants``."""
    if isinstance(step, Affine):
        weight, bias = _c_affine_names(var, prefix)
        rows = "".join(f"    {_c_array(row)},\n" for row in step.weight)
        constants += [
            f"static const double {weight}[{step.size}][{len(step.weight[0])}] = {{\n{rows}}};",
            f"static const double {bias}[{step.size}] = {_c_array(step.bias)};"]
        return [f"double {var}[{step.size}];",
                f"for (int i = 0; i < {step.size}; ++i) {{",
                f"    double s = {bias}[i];",
                f"    for (int j = 0; j < {len(step.weight[0])}; ++j)",
                f"        s += {weight}[i][j] * {_c_ref(step.source, 'j')};",
                f"    {var}[i] = s;",
                "}"]  # fmt: skip
    text = translate(step.template, "c").format(*_c_operands(var, step, prefix, constants))
    return [f"double {var}[{step.size}];",
            f"for (int i = 0; i < {step.size}; ++i)",
            f"    {var}[i] = {text};"]  # fmt: skip


def _tangent_ref(source: str, index: str) -> str:
    return f"{'din' if source == 'v0' else 'd' + source}[{index}]"


def _c_tangent_step(var: str, step: Affine | Elementwise, prefix: str) -> list[str]:
    """The statements computing ``d<var>``, the derivative of ``var`` along the input direction
    ``din``, after :func:`_c_step` has computed the values (and defined the tables)."""
    if isinstance(step, Affine):
        weight, _ = _c_affine_names(var, prefix)
        return [f"for (int i = 0; i < {step.size}; ++i) {{",
                "    double s = 0.0;",
                f"    for (int j = 0; j < {len(step.weight[0])}; ++j)",
                f"        s += {weight}[i][j] * {_tangent_ref(step.source, 'j')};",
                f"    d{var}[i] = s;",
                "}"]  # fmt: skip
    if len(step.partials) != len(step.operands):
        raise FormulaError(f"step {var} ({step.template}) has no derivative")
    args = _c_operands(var, step, prefix, None)
    terms = [f"({partial.format(*args)})*{_tangent_ref(operand, 'i')}"
             for partial, operand in zip(step.partials, step.operands, strict=True)
             if isinstance(operand, str)]  # fmt: skip
    return [f"for (int i = 0; i < {step.size}; ++i)",
            f"    d{var}[i] = {' + '.join(terms)};"]


def render_c_tangent(network: FormulaGraph, outputs: Sequence[str], function: str) -> str:
    """C99 definitions (tables, then ``void <function>(const double *in, const double *din,
    double *out, double *dout)``) computing the variables ``outputs`` one after another into
    ``out`` and, when ``din`` is not NULL, their derivatives along the input direction ``din``
    into ``dout``: forward-mode differentiation, exact up to rounding."""
    constants: list[str] = []
    values: list[str] = []
    both: list[str] = []
    for var, step in network.steps.items():
        lines = _c_step(var, step, function, constants)
        values += lines
        both += [*lines, f"double d{var}[{step.size}];", *_c_tangent_step(var, step, function)]
    offset = 0
    for var in outputs:
        size = network.size(var)
        copy = [f"for (int i = 0; i < {size}; ++i)", f"    out[{offset} + i] = {_c_ref(var, 'i')};"]
        values += copy
        both += [*copy, f"for (int i = 0; i < {size}; ++i)",
                 f"    dout[{offset} + i] = {_tangent_ref(var, 'i')};"]  # fmt: skip
        offset += size

    def define(signature: str, body: list[str]) -> str:
        return f"{signature}\n{{\n" + "".join(f"    {line}\n" for line in body) + "}\n"

    value_function, tangent_function = f"{function}_values", f"{function}_tangents"
    return "\n\n".join([
        "\n".join(constants),
        define(f"static void {value_function}(const double *in, double *out)", values),
        define(f"static void {tangent_function}(const double *in, const double *din, "
               "double *out, double *dout)", both),
        define(f"void {function}(const double *in, const double *din, double *out, double *dout)",
               ["if (din)", f"    {tangent_function}(in, din, out, dout);", "else",
                f"    {value_function}(in, out);"]),
    ])  # fmt: skip


def render_c(network: FormulaGraph, signature: Signature) -> str:
    """A C99 file with ``void <model>(const double *in, double *out)``; needs only <math.h>."""
    name = signature.function
    constants: list[str] = []
    body = [line for var, step in network.steps.items()
            for line in _c_step(var, step, name, constants)]  # fmt: skip
    n_out = len(signature.outputs)
    source = "in" if network.output == "v0" else network.output
    body += [f"for (int i = 0; i < {n_out}; ++i)", f"    out[i] = {source}[i];"]
    header = signature.header(lambda i, p: f"in[{i}]", lambda i, p: f"out[{i}]")
    header += ["C99, needs only <math.h> (link with -lm).",
               f"Usage: double in[{len(signature.inputs)}], out[{n_out}]; {name}(in, out);"]
    comment = "\n".join(["/*", *(f" * {line.replace('*/', '* /')}" for line in header), " */"])
    parts = [
        comment,
        "#include <math.h>",
        f"#define {name.upper()}_N_INPUTS {len(signature.inputs)}\n"
        f"#define {name.upper()}_N_OUTPUTS {n_out}",
        "\n".join(constants),
        f"void {name}(const double *in, double *out)\n{{\n"
        + "".join(f"    {line}\n" for line in body) + "}",
    ]
    return "\n\n".join(parts) + "\n"
