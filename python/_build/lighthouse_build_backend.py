"""PEP 517 build backend: scikit-build-core, run against the installing interpreter's packages.

A PyTorch extension must be compiled against the torch it will run with. pip's default isolated
build environment holds neither that torch nor, on an offline machine, any way to download
scikit-build-core, so it cannot build this package. This backend puts the interpreter's own
site-packages back on sys.path, asks for no extra build requirements, and hands every hook to
scikit-build-core. With it a plain `pip install ./python` works offline, as long as the
interpreter has torch, scikit-build-core, cmake and ninja (or make).
"""

import os
import sys
import sysconfig


def _use_interpreter_site_packages() -> None:
    for key in ("purelib", "platlib"):
        path = sysconfig.get_paths()[key]
        if path not in sys.path:
            sys.path.append(path)
    # The build's own subprocesses (CMake asks this interpreter where torch is) must see the
    # same packages: drop the variables through which pip hides them.
    for name in ("PYTHONPATH", "PYTHONNOUSERSITE"):
        os.environ.pop(name, None)


_use_interpreter_site_packages()

from scikit_build_core import build as _skbuild  # noqa: E402

build_wheel = _skbuild.build_wheel
build_sdist = _skbuild.build_sdist
build_editable = _skbuild.build_editable
prepare_metadata_for_build_wheel = _skbuild.prepare_metadata_for_build_wheel
prepare_metadata_for_build_editable = _skbuild.prepare_metadata_for_build_editable


def get_requires_for_build_wheel(config_settings=None):
    # Everything the build needs comes from the interpreter (see the module docstring); asking
    # pip for more would make it try the network.
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []
