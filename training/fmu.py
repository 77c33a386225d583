"""``surrogate export --format fmu``: a bundle as a Functional Mock-up Unit (FMI 2.0 or 3.0,
model exchange and co-simulation), self-contained: the network as C99 (the scaling included,
as :mod:`training.formula_code` writes it), exact directional derivatives by forward-mode
differentiation of the same code, the training range as a Boolean output ``in_domain`` and as
event indicators, and a binary compiled for this platform by the C compiler found here.

Layout of the unit (a zip file)::

    modelDescription.xml
    binaries/<platform>/<model>.so      (not with sources_only)
    sources/surrogate_model.{h,c}       generated: the network, its ranges and its token
    sources/fmu_core.{h,c}, fmi2.c|fmi3.c   the FMI functions, shipped in training/fmu_c
    sources/buildDescription.xml        (FMI 3; FMI 2 lists the files in modelDescription.xml)
    documentation/index.html, documentation/model.json   the model card

Value references (the same in FMI 2 and 3; see ``fmu_c/fmu_core.h``): 0 time, then the inputs,
the outputs, for ensembles ``<output>_std``, ``in_domain``, and per input ``<input>_above_min``
and ``<input>_below_max`` (its distance to the training range, negative outside it).
"""

from __future__ import annotations

import datetime
import hashlib
import html
import io
import json
import os
import platform
import shutil
import subprocess
import tempfile
import uuid
import zipfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from service.bundle_format import MODEL_FILE, OUTPUT_TENSOR, STD_TENSOR
from training.atomic import replace_whole
from training.errors import TrainingError
from training.formula import read_bundle, read_outputs
from training.formula_code import render_c_tangent
from training.formula_render import Signature, literal
from training.pipeline import installed_version

__all__ = ["FMI_VERSIONS", "FmuError", "export_fmu", "find_compiler"]

FMI_VERSIONS = (2, 3)
_CORE = ("fmu_core.h", "fmu_core.c")
_MODEL_SOURCES = ("surrogate_model.h", "surrogate_model.c")
_TOOL = "surrogate-serving"


class FmuError(TrainingError, ValueError):
    """The unit cannot be written; the message says why in one line."""


@dataclass(frozen=True)
class _Variable:
    name: str
    vr: int
    causality: str  # independent, input, output, local
    variability: str  # continuous, discrete
    kind: str  # Real or Boolean
    description: str = ""
    unit: str = ""
    start: float | None = None
    low: float | None = None
    high: float | None = None
    depends_on: tuple[int, ...] = ()  # value references of the inputs


def export_fmu(
    repo: str | os.PathLike,
    name: str,
    output: str | os.PathLike,
    *,
    version: int | None = None,
    fmi: int = 2,
    sources_only: bool = False,
) -> Path:
    """Write model ``name`` of ``repo`` as an FMU at ``output``, whole or not at all.

    Parameters
    ----------
    fmi : {2, 3}
        The FMI version.
    sources_only : bool
        Ship the C sources (and the build description) without a binary, for a target this
        machine cannot compile for (Windows, macOS).

    Raises
    ------
    FmuError
        No C compiler (unless ``sources_only``), a compilation that fails, or a platform
        without a known FMI binary folder; FormulaError for a bundle that cannot be translated.
    """
    if fmi not in FMI_VERSIONS:
        raise FmuError(f"unknown FMI version {fmi!r}; versions: 2, 3")
    path, card, model = read_bundle(repo, name, version)
    graph_outputs = {value.name for value in model.graph.output}
    names = [OUTPUT_TENSOR] + ([STD_TENSOR] if STD_TENSOR in graph_outputs else [])
    network, variables = read_outputs(model, names)
    signature = Signature.from_card(card, path)
    sha256 = hashlib.sha256((path / MODEL_FILE).read_bytes()).hexdigest()
    token = "{" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"surrogate:{sha256}:fmi{fmi}")) + "}"
    model_variables = _variables(signature, ensemble=len(names) > 1)
    identifier = signature.function
    sources = {
        "surrogate_model.h": _model_header(signature, len(names), token),
        "surrogate_model.c": _model_source(signature, model_variables, network, variables),
        **{file: (resources.files("training") / "fmu_c" / file).read_text("utf-8")
           for file in (*_CORE, f"fmi{fmi}.c")},
    }  # fmt: skip
    source_files = [file for file in sources if file.endswith(".c")]
    files = {f"sources/{file}": text.encode() for file, text in sources.items()}
    files["modelDescription.xml"] = _model_description(
        fmi, card, signature, model_variables, identifier, token, sha256, source_files)
    if fmi == 3:
        files["sources/buildDescription.xml"] = _build_description(identifier, source_files)
    files["documentation/model.json"] = json.dumps(card, indent=2).encode()
    files["documentation/index.html"] = _documentation(card, model_variables, sha256)
    output = Path(output)
    with tempfile.TemporaryDirectory(prefix="surrogate-fmu-") as work:
        if not sources_only:
            folder, suffix = _platform_folder(fmi)
            binary = Path(work) / f"{identifier}{suffix}"
            _compile(Path(work), sources, binary)
            files[f"binaries/{folder}/{identifier}{suffix}"] = binary.read_bytes()
        _write_zip(output, files)
    return output


def _variables(signature: Signature, *, ensemble: bool) -> list[_Variable]:
    """Every variable, in value-reference order (fmu_core.h)."""
    inputs = signature.inputs
    all_inputs = tuple(range(1, len(inputs) + 1))
    variables = [_Variable("time", 0, "independent", "continuous", "Real",
                           "simulation time (the unit has no dynamics)")]  # fmt: skip
    for vr, port in enumerate(inputs, start=1):
        variables.append(_Variable(
            port.name, vr, "input", "continuous", "Real", f"trained on {port.low:.6g} .. "
            f"{port.high:.6g}", port.unit, (port.low + port.high) / 2, port.low, port.high))
    outputs = [(port.name, port.unit, "the surrogate's prediction") for port in signature.outputs]
    if ensemble:
        outputs += [(f"{port.name}_std", port.unit, f"spread of the ensemble's {port.name}")
                    for port in signature.outputs]  # fmt: skip
    for name, unit, description in outputs:
        variables.append(_Variable(name, len(variables), "output", "continuous", "Real",
                                   description, unit, depends_on=all_inputs))  # fmt: skip
    variables.append(_Variable("in_domain", len(variables), "output", "discrete", "Boolean",
                               "every input inside its training range", depends_on=all_inputs))
    for vr, port in enumerate(inputs, start=1):
        for suffix, description in (("above_min", f"{port.name} minus its training minimum"),
                                    ("below_max", f"training maximum minus {port.name}")):
            variables.append(_Variable(f"{port.name}_{suffix}", len(variables), "local",
                                       "continuous", "Real", description, port.unit,
                                       depends_on=(vr,)))  # fmt: skip
    taken: set[str] = set()
    for variable in variables:
        if variable.name in taken:
            raise FmuError(f"two FMU variables would be named {variable.name!r}; rename the "
                           "model's input or output that takes that name")
        taken.add(variable.name)
    return variables


def _model_header(signature: Signature, n_graph_outputs: int, token: str) -> str:
    n_in, n_out = len(signature.inputs), len(signature.outputs)
    return "\n".join([
        "/* Generated by `surrogate export --format fmu`: the shape of the network in",
        f" * surrogate_model.c ({signature.model!r} version {signature.version}). */",
        "#ifndef SURROGATE_MODEL_H",
        "#define SURROGATE_MODEL_H",
        f"#define SM_N_INPUTS {n_in}",
        f"#define SM_N_OUTPUTS {n_out}",
        f"#define SM_N_VALUES {n_out * n_graph_outputs} /* the outputs, then their std */",
        f'#define SM_TOKEN "{token}"',
        "extern const double sm_min[SM_N_INPUTS], sm_max[SM_N_INPUTS], sm_start[SM_N_INPUTS];",
        "/* out[SM_N_VALUES] at in[SM_N_INPUTS]; with din not NULL, dout = d out/d in . din */",
        "void sm_evaluate(const double *in, const double *din, double *out, double *dout);",
        "#endif",
        "",
    ])  # fmt: skip


def _model_source(signature: Signature, model_variables: list[_Variable], network,
                  graph_variables: tuple[str, ...]) -> str:  # fmt: skip
    """The network's C, and the inputs' ranges and start values as modelDescription.xml has
    them."""
    def table(values) -> str:
        return "{" + ", ".join(literal(float(v)) for v in values) + "}"

    inputs = [v for v in model_variables if v.causality == "input"]
    low, high, start = ([v.low for v in inputs], [v.high for v in inputs],
                        [v.start for v in inputs])
    header = signature.header(lambda i, p: f"in[{i}]", lambda i, p: f"out[{i}]")
    comment = "\n".join(["/*", *(f" * {line.replace('*/', '* /')}" for line in header), " */"])
    return "\n\n".join([
        comment,
        '#include <math.h>\n#include <stddef.h>\n\n#include "surrogate_model.h"',
        f"const double sm_min[SM_N_INPUTS] = {table(low)};\n"
        f"const double sm_max[SM_N_INPUTS] = {table(high)};\n"
        f"const double sm_start[SM_N_INPUTS] = {table(start)};",
        render_c_tangent(network, graph_variables, "sm_evaluate"),
    ])  # fmt: skip


def _text(value: float) -> str:
    return repr(float(value))


def _model_description(fmi: int, card: dict[str, Any], signature: Signature,
                       variables: list[_Variable], identifier: str, token: str, sha256: str,
                       source_files: list[str]) -> bytes:  # fmt: skip
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    root = ET.Element("fmiModelDescription", {
        "fmiVersion": f"{fmi}.0",
        "modelName": signature.model,
        ("guid" if fmi == 2 else "instantiationToken"): token,
        "description": str(card.get("description") or f"surrogate {signature.model}"),
        "version": str(signature.version),
        "generationTool": f"{_TOOL} {installed_version(_TOOL) or 'unknown'} "
                          "(surrogate export --format fmu)",
        "generationDateAndTime": now,
        "variableNamingConvention": "flat",
    })  # fmt: skip
    indicators = [v for v in variables if v.causality == "local"]
    common = {"modelIdentifier": identifier}
    if fmi == 2:
        root.set("numberOfEventIndicators", str(len(indicators)))
        capabilities = {"providesDirectionalDerivative": "true",
                        "canGetAndSetFMUstate": "true", "canSerializeFMUstate": "true"}
        for element, extra in (("ModelExchange", {"completedIntegratorStepNotNeeded": "true"}),
                               ("CoSimulation",
                                {"canHandleVariableCommunicationStepSize": "true"})):
            interface = ET.SubElement(root, element, {**common, **extra, **capabilities})
            files = ET.SubElement(interface, "SourceFiles")
            for file in source_files:
                ET.SubElement(files, "File", {"name": file})
    else:
        capabilities = {"providesDirectionalDerivatives": "true",
                        "providesAdjointDerivatives": "true",
                        "canGetAndSetFMUState": "true", "canSerializeFMUState": "true"}
        ET.SubElement(root, "ModelExchange",
                      {**common, "needsCompletedIntegratorStep": "false", **capabilities})
        ET.SubElement(root, "CoSimulation",
                      {**common, "canHandleVariableCommunicationStepSize": "true",
                       **capabilities})  # fmt: skip
    units = sorted({v.unit for v in variables if v.unit})
    if units:
        definitions = ET.SubElement(root, "UnitDefinitions")
        for unit in units:
            ET.SubElement(definitions, "Unit", {"name": unit})
    categories = ET.SubElement(root, "LogCategories")
    ET.SubElement(categories, "Category", {"name": "logStatusError",
                                           "description": "a call the unit refused"})
    annotation = ET.Element("Model", {"name": signature.model, "version": str(signature.version),
                                      "sha256": sha256, "file": MODEL_FILE})
    if fmi == 2:  # FMI 2 puts annotations before the variables, FMI 3 after the structure
        ET.SubElement(ET.SubElement(root, "VendorAnnotations"), "Tool",
                      {"name": _TOOL}).append(annotation)
    _write_variables(ET.SubElement(root, "ModelVariables"), variables, fmi)
    _write_structure(ET.SubElement(root, "ModelStructure"), variables, fmi)
    if fmi == 3:
        ET.SubElement(ET.SubElement(root, "Annotations"), "Annotation",
                      {"type": _TOOL}).append(annotation)
    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"


def _attributes(variable: _Variable) -> dict[str, str]:
    attributes = {"name": variable.name, "valueReference": str(variable.vr),
                  "description": variable.description, "causality": variable.causality,
                  "variability": variable.variability}  # fmt: skip
    if variable.causality in ("output", "local"):
        attributes["initial"] = "calculated"
    return attributes


def _type_attributes(variable: _Variable) -> dict[str, str]:
    attributes = {}
    if variable.unit:
        attributes["unit"] = variable.unit
    if variable.start is not None:
        attributes["start"] = _text(variable.start)
    if variable.low is not None:
        attributes["min"], attributes["max"] = _text(variable.low), _text(variable.high)
    return attributes


def _write_variables(parent: ET.Element, variables: list[_Variable], fmi: int) -> None:
    for variable in variables:
        if fmi == 2:
            element = ET.SubElement(parent, "ScalarVariable", _attributes(variable))
            ET.SubElement(element, variable.kind, _type_attributes(variable))
        else:
            kind = "Float64" if variable.kind == "Real" else variable.kind
            ET.SubElement(parent, kind, {**_attributes(variable), **_type_attributes(variable)})


def _write_structure(parent: ET.Element, variables: list[_Variable], fmi: int) -> None:
    """Outputs, initial unknowns (the outputs) and, in FMI 3, the event indicators, each with
    the inputs it depends on. FMI 2 names variables by their 1-based position in ModelVariables
    (vr + 1 here) and groups the unknowns; FMI 3 names them by value reference."""
    def unknown(group: ET.Element, tag: str, variable: _Variable) -> None:
        number = (lambda vr: str(vr + 1)) if fmi == 2 else str
        ET.SubElement(group, "Unknown" if fmi == 2 else tag, {
            ("index" if fmi == 2 else "valueReference"): number(variable.vr),
            "dependencies": " ".join(number(vr) for vr in variable.depends_on),
            "dependenciesKind": " ".join(["dependent"] * len(variable.depends_on)),
        })  # fmt: skip

    outputs = [v for v in variables if v.causality == "output"]
    indicators = [v for v in variables if v.causality == "local"] if fmi == 3 else []
    for tag, listed in (("Output", outputs), ("InitialUnknown", outputs),
                        ("EventIndicator", indicators)):
        group = ET.SubElement(parent, f"{tag}s") if fmi == 2 and listed else parent
        for variable in listed:
            unknown(group, tag, variable)


def _build_description(identifier: str, source_files: list[str]) -> bytes:
    root = ET.Element("fmiBuildDescription", {"fmiVersion": "3.0"})
    configuration = ET.SubElement(root, "BuildConfiguration", {"modelIdentifier": identifier})
    files = ET.SubElement(configuration, "SourceFileSet", {"language": "C99"})
    for file in source_files:
        ET.SubElement(files, "SourceFile", {"name": file})
    ET.SubElement(configuration, "Library", {"name": "m", "description": "C's <math.h>"})
    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"


def _documentation(card: dict[str, Any], variables: list[_Variable], sha256: str) -> bytes:
    """A page naming the model and its variables; card text is escaped, never markup."""
    rows = "".join(
        f"<tr><td>{html.escape(v.name)}</td><td>{v.vr}</td><td>{html.escape(v.causality)}</td>"
        f"<td>{html.escape(v.unit)}</td><td>{html.escape(v.description)}</td></tr>\n"
        for v in variables
    )
    title = html.escape(f"{card.get('name')} version {card.get('version')}")
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>"
        f"<body>\n<h1>{title}</h1>\n<p>{html.escape(str(card.get('description') or ''))}</p>\n"
        f"<p>model.onnx sha256 {sha256}; the whole card is in model.json beside this page.</p>\n"
        "<table><tr><th>variable</th><th>value reference</th><th>causality</th><th>unit</th>"
        f"<th>description</th></tr>\n{rows}</table>\n</body></html>\n"
    ).encode()


def _platform_folder(fmi: int) -> tuple[str, str]:
    """The unit's binary folder for this machine, and the shared library's suffix."""
    system, machine = platform.system(), platform.machine().lower()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
    if system not in ("Linux", "Darwin") or machine not in arch:
        raise FmuError(f"no FMU binary can be built here ({system} {machine}); export with "
                       "--sources-only and compile the unit on the target")  # fmt: skip
    suffix = ".so" if system == "Linux" else ".dylib"
    if fmi == 2:
        names = {("Linux", "x86_64"): "linux64", ("Darwin", "x86_64"): "darwin64",
                 ("Darwin", "aarch64"): "darwin64", ("Linux", "aarch64"): "aarch64-linux"}
        return names[system, arch[machine]], suffix
    return f"{arch[machine]}-{system.lower()}", suffix


def find_compiler() -> str | None:
    """The C compiler: ``$CC`` if set, else the first of cc, gcc, clang on the PATH."""
    candidates = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _compile(work: Path, sources: dict[str, str], binary: Path) -> None:
    compiler = find_compiler()
    if compiler is None:
        looked = f"$CC={os.environ['CC']}" if os.environ.get("CC") else "cc, gcc, clang"
        raise FmuError(f"no C compiler found (looked for {looked} on the PATH): install one "
                       "(e.g. apt-get install gcc), or export with --sources-only")
    for file, text in sources.items():
        (work / file).write_text(text, encoding="utf-8")
    command = [compiler, "-std=c99", "-O2", "-shared", "-fPIC", "-fvisibility=hidden",
               "-o", str(binary), *(str(work / f) for f in sources if f.endswith(".c")), "-lm"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise FmuError(f"{Path(compiler).name} could not compile the unit: {first}")


def _write_zip(output: Path, files: dict[str, bytes]) -> None:
    """The zip at ``output``, whole or not at all (a hidden sibling renamed over it)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            archive.writestr(name, files[name])
    replace_whole(output, buffer.getvalue())
