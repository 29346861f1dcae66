"""Open-X datasets as the TFDS catalog describes them, turned into real builder dirs for tests and demos.

A catalog file (``catalog/<name>.yaml``) holds a dataset's "Feature structure" block exactly as the TFDS
catalog page prints it (``Tensor(shape=(7,), dtype=float32, description=...)``, bare ``float32`` for a
scalar, ``Sequence({...})``...). ``parse_features`` reads that text, without ``eval``, into a tensorflow-datasets
``FeaturesDict``; ``write_catalog_dataset`` fills it with plausible values and writes it with TFDS's own
serializer (``synth.write_rlds_dataset``), so every built-in spec meets its dataset's published layout.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlaflow.schemas import SpecError
from vlaflow.schemas.embodiment import read_yaml

from .synth import encode_jpeg, encode_png, sample_frame, write_rlds_dataset

CATALOG_DIR = Path(__file__).parent / "catalog"

_DTYPES = {"bool": np.bool_, "string": np.str_, "float16": np.float16, "float32": np.float32,
           "float64": np.float64, "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
           "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64}
_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<num>-?\d+)|(?P<sym>[(){}:,=]))")


class CatalogError(SpecError):
    """A catalog file or feature block that cannot be read."""


@dataclass
class Catalog:
    name: str
    version: str
    source: str
    splits: dict[str, int]
    features_text: str
    values: dict[str, dict] = field(default_factory=dict)
    path: str = ""

    def features(self):
        return parse_features(self.features_text, self.path or self.name)


def load_catalog(path: str | Path) -> Catalog:
    d = read_yaml(path, "catalog file")
    for k in ("name", "version", "features"):
        if not isinstance(d.get(k), str):
            raise CatalogError(f"{path}: {k}: missing or not a string")
    splits = d.get("splits") or {"train": 1}
    values = d.get("values") or {}
    if not isinstance(splits, dict) or not isinstance(values, dict):
        raise CatalogError(f"{path}: splits and values must be mappings")
    return Catalog(d["name"], d["version"], str(d.get("source", "")), {str(k): int(v) for k, v in splits.items()},
                   d["features"], values, str(path))


def catalogs() -> dict[str, Catalog]:
    return {c.name: c for c in (load_catalog(p) for p in sorted(CATALOG_DIR.glob("*.yaml")))}


def catalog_for(name: str) -> Catalog:
    """A dataset's catalog layout by its builder name or any alias of its built-in spec."""
    from .converter import builtin_specs

    known = catalogs()
    spec = builtin_specs().get(name)
    for n in (name, *((spec.dataset, *spec.aliases) if spec else ())):
        if n in known:
            return known[n]
    raise CatalogError(f"no catalog layout for {name!r}; known: {', '.join(sorted(known))}")


# -- the feature-structure text ---------------------------------------------------------------------
class _Parser:
    def __init__(self, text: str, where: str):
        self.text, self.where, self.pos = text, where, 0

    def fail(self, msg: str):
        line = self.text.count("\n", 0, self.pos) + 1
        raise CatalogError(f"{self.where}: feature structure line {line}: {msg}")

    def peek(self) -> tuple[str, str]:
        m = _TOKEN.match(self.text, self.pos)
        if not m:
            return ("end", "") if not self.text[self.pos:].strip() else ("bad", self.text[self.pos:self.pos + 20])
        return m.lastgroup, m.group(m.lastgroup)

    def next(self) -> tuple[str, str]:
        m = _TOKEN.match(self.text, self.pos)
        if not m:
            self.fail(f"unexpected text {self.text[self.pos:self.pos + 30].strip()!r}")
        self.pos = m.end()
        return m.lastgroup, m.group(m.lastgroup)

    def expect(self, sym: str) -> None:
        kind, tok = self.next()
        if tok != sym:
            self.fail(f"expected {sym!r}, got {tok!r}")

    def feature(self):
        from tensorflow_datasets.core import features as F

        kind, name = self.next()
        if kind != "name":
            self.fail(f"expected a feature, got {name!r}")
        if self.peek()[1] != "(":  # a bare dtype: a scalar Tensor (``string`` for bytes/text)
            if name not in _DTYPES:
                self.fail(f"unknown dtype {name!r}")
            return F.Tensor(shape=(), dtype=_DTYPES[name])
        self.expect("(")
        if name in ("FeaturesDict", "Dataset", "Sequence") and self.peek()[1] == "{":
            inner = self.mapping()
        elif name == "Sequence":
            inner = self.feature()
        else:
            inner = None
        kwargs = self.kwargs()
        self.expect(")")
        try:
            return self.build(name, inner, kwargs)
        except CatalogError:
            raise
        except Exception as err:  # tfds refuses an impossible combination
            self.fail(f"{name}: {type(err).__name__}: {err}")

    def build(self, name: str, inner, kw: dict):
        import tensorflow_datasets as tfds
        from tensorflow_datasets.core import features as F

        dtype = _DTYPES.get(kw.get("dtype", "float32"))
        if dtype is None:
            self.fail(f"unknown dtype {kw['dtype']!r}")
        shape = kw.get("shape", ())
        doc = kw.get("description")
        if name == "FeaturesDict":
            return F.FeaturesDict(inner, doc=doc)
        if name == "Dataset":
            return tfds.features.Dataset(inner, doc=doc)
        if name == "Sequence":
            return F.Sequence(inner, length=kw.get("length"), doc=doc)
        if name in ("Tensor", "Scalar"):
            return F.Tensor(shape=shape, dtype=dtype, doc=doc)
        if name == "Text":
            return F.Text(doc=doc)
        if name == "ClassLabel":
            return F.ClassLabel(num_classes=int(kw.get("num_classes", 2)), doc=doc)
        if name == "Image":
            fmt = "jpeg" if dtype == np.uint8 and shape and shape[-1] in (1, 3) and shape[-1] == 3 else "png"
            return F.Image(shape=shape, dtype=dtype, encoding_format=fmt, doc=doc)
        self.fail(f"unknown feature class {name!r}")

    def mapping(self) -> dict:
        self.expect("{")
        out = {}
        while self.peek()[1] != "}":
            kind, key = self.next()
            if kind != "str":
                self.fail(f"expected a quoted key, got {key!r}")
            self.expect(":")
            out[key[1:-1]] = self.feature()
            if self.peek()[1] == ",":
                self.next()
        self.expect("}")
        return out

    def kwargs(self) -> dict:
        out: dict = {}
        if self.peek()[1] == ",":
            self.next()
        while self.peek()[0] == "name":
            _, key = self.next()
            self.expect("=")
            if key == "description":
                out[key] = self.description()
                return out
            if self.peek()[1] == "(":
                out[key] = self.shape()
            else:
                out[key] = self.next()[1]
            if self.peek()[1] == ",":
                self.next()
        return out

    def description(self) -> str:
        """Free text printed unquoted: it ends at the ``)`` that closes the feature, counting the text's own
        parentheses; text with unbalanced ones ends at the first ``)`` after which its line holds only
        ``)``s and a comma."""
        depth = 0
        for p in range(self.pos, len(self.text)):
            ch = self.text[p]
            if ch == "\n":
                break
            depth += ch == "("
            if ch == ")":
                if depth == 0:
                    out, self.pos = self.text[self.pos:p].strip(), p
                    return out
                depth -= 1
        end = re.compile(r"\)+,?[ \t]*(?:\n|$)")
        for m in re.finditer(r"\)", self.text[self.pos:]):
            p = self.pos + m.start()
            if end.match(self.text, p):
                out, self.pos = self.text[self.pos:p].strip(), p
                return out
        self.fail("description never ends")

    def shape(self) -> tuple:
        self.expect("(")
        dims = []
        while self.peek()[1] != ")":
            kind, tok = self.next()
            if kind == "num":
                dims.append(int(tok))
            elif tok == "None":
                dims.append(None)
            elif tok != ",":
                self.fail(f"bad shape entry {tok!r}")
        self.expect(")")
        return tuple(dims)


def parse_features(text: str, where: str = "<catalog>"):
    """The catalog's ``FeaturesDict({...})`` text → a tensorflow-datasets ``FeaturesDict``."""
    p = _Parser(text, where)
    feats = p.feature()
    if p.peek()[0] != "end" and p.peek()[1] != ",":
        p.fail(f"unexpected text after the feature structure: {p.peek()[1]!r}")
    return feats


# -- synthesized values ----------------------------------------------------------------------------
_FLAGS = ("is_first", "is_last", "is_terminal")


class _Values:
    """Plausible values for one feature tree; ``hints`` (catalog ``values``) override by flattened key."""

    def __init__(self, hints: dict, rng: np.random.Generator, instruction: str):
        self.hints, self.rng, self.instruction = hints, rng, instruction

    def tree(self, feat, key: str, t: int, steps: int):
        from tensorflow_datasets.core import features as F

        if isinstance(feat, F.FeaturesDict):
            return {k: self.tree(child, f"{key}/{k}".lstrip("/"), t, steps) for k, child in feat.items()}
        if isinstance(feat, F.Sequence):
            n = feat._length if feat._length is not None else int(self.rng.integers(0, 3))
            return [self.tree(feat.feature, key, t, steps) for _ in range(n)]
        return self.leaf(feat, key, t, steps)

    def leaf(self, feat, key: str, t: int, steps: int):
        from tensorflow_datasets.core import features as F

        name = key.rsplit("/", 1)[-1]
        hint = self.hints.get(key, {})
        dtype = np.dtype(feat.np_dtype) if not isinstance(feat, F.Text) else np.dtype(object)
        shape = tuple(d if d is not None else int(self.rng.integers(1, 4)) for d in feat.shape)
        if name in _FLAGS:
            return {"is_first": t == 0, "is_last": t == steps - 1, "is_terminal": t == steps - 1}[name]
        if isinstance(feat, F.Image):
            return self.image(shape, dtype)
        if isinstance(feat, F.ClassLabel):
            return int(self.rng.integers(0, feat.num_classes))
        if "text" in hint or dtype.kind in "OSU":
            text = hint.get("text", self.instruction if _is_language(key) else f"{name} {t}")
            if dtype.kind in "iu":  # code points, zero padded (language_table)
                codes = np.zeros(int(np.prod(shape)), dtype)
                codes[:len(text)] = [ord(c) for c in text[:len(codes)]]
                return codes.reshape(shape)
            return np.full(shape, text, dtype=object) if shape else text
        if dtype == np.bool_:
            return self.rng.random(shape) < 0.5 if shape else bool(self.rng.random() < 0.5)
        if "choice" in hint:
            v = self.rng.choice(np.asarray(hint["choice"], dtype=np.float64), size=shape)
        elif dtype.kind in "iu":
            lo, hi = hint.get("uniform", (0, 10))
            v = self.rng.integers(int(lo), int(hi), size=shape)
        else:
            lo, hi = hint.get("uniform", (-0.5, 0.5))
            v = self.rng.uniform(lo, hi, size=shape)
        if "unit_quat" in hint:
            a, b = hint["unit_quat"]
            flat = v.reshape(-1)
            flat[a:b] /= np.linalg.norm(flat[a:b])
        return np.asarray(v).astype(dtype)

    def image(self, shape: tuple, dtype: np.dtype):
        h, w, c = (shape + (1,))[:3] if len(shape) == 2 else shape
        if dtype == np.float32:  # a depth map in metres; TFDS stores it as a PNG of the floats' bytes
            return self.rng.uniform(0.3, 3.0, (h, w, 1)).astype(np.float32)
        rgb = sample_frame(self.rng, 0, max(h, w))[:h, :w]
        if dtype == np.uint8 and c == 3:
            return encode_jpeg(rgb)
        if dtype == np.uint16:
            return encode_png(self.rng.integers(300, 3000, (h, w), dtype=np.uint16))
        return encode_png(rgb[..., 0] if c == 1 else rgb[..., :c])


def _is_language(key: str) -> bool:
    return any(w in key for w in ("instruction", "language", "task", "goal"))


def synthesize_episode(features, hints: dict, rng: np.random.Generator, steps: int, instruction: str) -> dict:
    """One episode in TFDS nested form, every leaf filled per its feature (flags mark the true first/last step)."""
    values = _Values(hints, rng, instruction)
    top = features
    out = {"steps": [values.tree(top["steps"].feature, "", t, steps) for t in range(steps)]}
    for k, feat in top.items():
        if k != "steps":
            out[k] = values.tree(feat, k, 0, 1)
    return out


def write_catalog_dataset(catalog: Catalog, data_dir: str | Path, episodes: int = 2, steps: int = 5,
                          seed: int = 0, splits: tuple[str, ...] | None = None) -> Path:
    """A builder dir ``<data_dir>/<name>/<version>`` laid out as the catalog describes the dataset."""
    rng = np.random.default_rng(seed)
    features = catalog.features()
    names = splits or tuple(catalog.splits)[:1]
    eps = {s: [synthesize_episode(features, catalog.values, rng, steps, f"pick up the cup {i}")
               for i in range(episodes)] for s in names}
    return write_rlds_dataset(data_dir, catalog.name, catalog.version, features, eps)
