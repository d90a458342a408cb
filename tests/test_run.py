"""run_mindformer.py's --register_path: research folders register their classes before the config is built."""
import textwrap

from mindformers.run import register_path
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister
from tests.e2e.helpers import assert_one_line_error, run_cli

_MODULE = """
from mindformers.tools.register import MindFormerModuleType, MindFormerRegister

@MindFormerRegister.register(MindFormerModuleType.CALLBACK)
class {name}:
    pass
"""


def test_package_folder_registers_its_classes(tmp_path):
    package = tmp_path / "probe_research_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(_MODULE.format(name="ResearchPackageProbe")))
    register_path(str(package))
    assert MindFormerRegister.get_cls(MindFormerModuleType.CALLBACK, "ResearchPackageProbe").__name__ == \
        "ResearchPackageProbe"


def test_plain_folder_imports_every_module(tmp_path):
    (tmp_path / "probe_research_module.py").write_text(textwrap.dedent(_MODULE.format(name="ResearchModuleProbe")))
    register_path(str(tmp_path))
    assert MindFormerRegister.get_cls(MindFormerModuleType.CALLBACK, "ResearchModuleProbe").__name__ == \
        "ResearchModuleProbe"


def test_missing_register_path_is_one_line(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("seed: 1\n")
    result = run_cli(["run_mindformer.py", "--config", config, "--register_path", tmp_path / "nowhere"])
    assert_one_line_error(result, "--register_path", "nowhere")
