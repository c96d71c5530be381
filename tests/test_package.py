import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

import ssl_ser
from ssl_ser.cli.main import COMMANDS, cli


def test_import_does_not_load_torch():
    code = "import ssl_ser, ssl_ser.cli.main, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("command", ["finetune", "classify", "predict"])
def test_help_does_not_import_pandas(command):
    # the commands' choices (conditions, telephone sources) come from ssl_ser.choices
    code = (
        "import sys; from ssl_ser.cli.main import cli; "
        f"cli.main(['{command}', '--help'], standalone_mode=False); "
        "print(sorted(m for m in ('pandas', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Usage:" in out.stdout and out.stdout.strip().splitlines()[-1] == "[]"


def test_version_option():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert ssl_ser.__version__ in result.output


def _walk(command: click.Command, path: list[str]):
    yield path
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            yield from _walk(command.get_command(ctx, name), [*path, name])


def test_every_command_has_help():
    paths = list(_walk(cli, []))
    assert len(paths) > len(COMMANDS)
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output


def test_unknown_command_is_usage_error():
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2


def test_commands_make_idle_openmp_threads_sleep_unless_the_user_chose():
    code = (
        "import os; from ssl_ser.cli.main import cli; "
        "cli.main(['corpora'], standalone_mode=False); print(os.environ.get('OMP_WAIT_POLICY'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip().splitlines()[-1] == "PASSIVE", out.stderr
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip().splitlines()[-1] == "ACTIVE", out.stderr


def test_every_click_choice_lists_exactly_its_registry():
    from ssl_ser import audio, corpora
    from ssl_ser.cache import STORAGE_DTYPE_CHOICES
    from ssl_ser.classify.features import COMBINES
    from ssl_ser.classify.measures import REQUESTED_TARGETS
    from ssl_ser.classify.splits import SPLITS
    from ssl_ser.classify.sweep.plan import BACKENDS
    from ssl_ser.corpora._base import ON_ERROR_CHOICES
    from ssl_ser.extract.config import DTYPES, LONG_AUDIO_POLICIES
    from ssl_ser.finetune import config as finetune
    from ssl_ser.pipelines.demo import SIZES
    from ssl_ser.pipelines.experiment import CORPORA_MODES

    registries = {
        "method": tuple(SPLITS),  # the split section's method, spelled --split
        "combine": COMBINES,
        "conditions": audio.CONDITIONS,
        "condition": audio.CONDITIONS,
        "telephone_source": audio.TELEPHONE_SOURCES,
        "dtype": DTYPES,
        "long_audio": LONG_AUDIO_POLICIES,
        "storage_dtype": STORAGE_DTYPE_CHOICES,
        "corpus": tuple(corpora.names()),
        "on_error": ON_ERROR_CHOICES,
        "corpora_mode": CORPORA_MODES,
        "size": tuple(SIZES),
        "head": finetune.HEADS,
        "freeze": finetune.FREEZES,
        "adapter": finetune.ADAPTERS,
        "backend": BACKENDS,
        "target": REQUESTED_TARGETS,
    }
    seen = set()
    for path in _walk(cli, []):
        command = cli
        for name in path:
            command = command.get_command(click.Context(command), name)
        for param in command.params:
            if isinstance(param.type, click.Choice):
                assert param.name in registries, (path, param.name, "add it to this table")
                assert tuple(param.type.choices) == tuple(registries[param.name]), (
                    path,
                    param.name,
                )
                seen.add(param.name)
    assert seen == set(registries)


def test_the_light_name_tuples_equal_their_registries():
    from ssl_ser.classify import features, measures, names
    from ssl_ser.classify.registry import CLASSIFIERS
    from ssl_ser.classify.splits import SPLITS
    from ssl_ser.classify.sweep.plan import BACKENDS

    assert tuple(CLASSIFIERS) == names.CLASSIFIER_NAMES
    assert tuple(SPLITS) == names.SPLIT_NAMES
    assert names.BACKEND_NAMES == BACKENDS
    assert names.TARGET_NAMES == measures.REQUESTED_TARGETS
    assert names.COMBINE_NAMES == features.COMBINES
    assert names.POOLING_NAMES == features.POOLING_OPTIONS
