"""`tmem list`, `tmem ctl` and `tmem top -b` through the real command
line, with an embedded host passed in as the click context object."""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner, Result

import tmem
from tmem import cli
from tmem.engine import stats
from tmem.monitor.testing import EmbeddedControl

MIB = 1 << 20


def tmem_cli(control: EmbeddedControl, *args: str) -> Result:
    seen: list[str | None] = []

    def connect(address: str | None) -> EmbeddedControl:
        seen.append(address)
        return control

    result = CliRunner().invoke(cli.main, list(args), obj=connect)
    assert seen in ([], [None]), "no --connect given: no address expected"
    return result


def client(control: EmbeddedControl, name: str) -> tmem.ClientStats:
    return next(c for c in control.snapshot().clients if c.name == name)


# -- tmem list ----------------------------------------------------------------


def test_list_shows_host_clients_and_pools(control: EmbeddedControl) -> None:
    result = tmem_cli(control, "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("host: capacity 2.0 MiB, used ")
    assert sum(line.startswith("client ") for line in lines) == 3
    assert sum(line.startswith("  pool ") for line in lines) == 6
    assert "refused_full=" not in result.output


def test_list_long_adds_every_counter(control: EmbeddedControl) -> None:
    result = tmem_cli(control, "list", "-l")
    assert result.exit_code == 0, result.output
    assert result.output.count("object_flush_pages=") == 2 + 3 * 2 + 6
    assert max(len(line) for line in result.output.splitlines()) <= 80


def test_list_json_round_trips_to_the_same_snapshot(
        control: EmbeddedControl) -> None:
    result = tmem_cli(control, "list", "--json")
    assert result.exit_code == 0, result.output
    again = stats.from_dict(stats.Snapshot, json.loads(result.output))
    assert again == control.snapshot()  # fake clock, no traffic between


def test_list_without_a_daemon_says_so(monkeypatch: pytest.MonkeyPatch
                                       ) -> None:
    monkeypatch.setenv("TMEM_ADDRESS", "/run/tmem.sock")
    result = CliRunner().invoke(cli.main, ["list"])
    assert result.exit_code == 2
    assert result.output == (
        "tmem: error: cannot connect to the tmem daemon at "
        "unix:/run/tmem.sock: No such file or directory; is `tmem serve` "
        "running?\n")


def test_connect_option_and_environment_name_the_address(
        control: EmbeddedControl, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    def connect(address: str | None) -> EmbeddedControl:
        seen.append(address)
        return control

    runner = CliRunner()
    runner.invoke(cli.main, ["list", "--connect", "host:1"], obj=connect)
    monkeypatch.setenv("TMEM_ADDRESS", "from-env")
    runner.invoke(cli.main, ["ctl", "freeable"], obj=connect)
    assert seen == ["host:1", "from-env"]


# -- tmem ctl -----------------------------------------------------------------


def test_freeze_and_thaw_show_in_the_next_snapshot(
        control: EmbeddedControl) -> None:
    result = tmem_cli(control, "ctl", "freeze", "web")
    assert (result.exit_code, result.output) == (0, "client web: frozen\n")
    assert client(control, "web").frozen
    assert not client(control, "database").frozen
    assert tmem_cli(control, "ctl", "thaw", "1").exit_code == 0
    assert not client(control, "web").frozen


def test_all_acts_on_every_client(control: EmbeddedControl) -> None:
    result = tmem_cli(control, "ctl", "weight", "--all", "250")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "client 1 (web): weight 250", "client 2 (database): weight 250",
        "client 3 (batch): weight 250"]
    assert {c.weight for c in control.snapshot().clients} == {250}


def test_cap_compress_and_weight_of_one_client(
        control: EmbeddedControl) -> None:
    for args in (("cap", "database", "1MiB"), ("compress", "2", "zstd"),
                 ("weight", "database", "7")):
        result = tmem_cli(control, "ctl", *args)
        assert result.exit_code == 0, result.output
    database = client(control, "database")
    assert (database.cap, database.compress, database.weight) == (
        MIB, "zstd", 7)
    assert tmem_cli(control, "ctl", "cap", "database", "none").exit_code == 0
    assert client(control, "database").cap is None


def test_shared_auth_grants_and_revokes_joining_a_shared_pool(
        control: EmbeddedControl) -> None:
    pool_uuid = str(uuid.uuid4())
    web = control.host.find_client("web")
    result = tmem_cli(control, "ctl", "shared-auth", "web", "-u", pool_uuid)
    assert result.exit_code == 0, result.output
    assert web.new_pool(shared=True, uuid=pool_uuid).shared

    result = tmem_cli(control, "ctl", "shared-auth", "--all", "--revoke",
                      "--uuid", pool_uuid)
    assert result.exit_code == 0, result.output
    assert f"client 2 (database): revoked for shared pool {pool_uuid}" in \
        result.output
    with pytest.raises(tmem.PermissionDenied):
        control.host.find_client("batch").new_pool(shared=True,
                                                   uuid=pool_uuid)


def test_flush_frees_ephemeral_memory_and_freeable_reports_it(
        control: EmbeddedControl) -> None:
    before = control.snapshot().host.freeable
    result = tmem_cli(control, "ctl", "freeable")
    assert result.output.endswith(f" freeable ({before} bytes)\n")

    result = tmem_cli(control, "ctl", "flush", "1")
    assert result.exit_code == 0, result.output
    host = control.snapshot().host
    assert host.freeable == 0 < before
    assert host.ephemeral_content.pages == 0
    assert host.persistent_content.pages == 48
    assert result.output.startswith("freed ")
    assert f"({before} bytes)" in result.output


def test_unknown_client_is_a_one_line_error(control: EmbeddedControl
                                            ) -> None:
    result = tmem_cli(control, "ctl", "freeze", "nobody")
    assert result.exit_code == 2
    assert result.output == "tmem: error: no client is named 'nobody'\n"
    result = tmem_cli(control, "ctl", "cap", "99", "1MiB")
    assert result.output == "tmem: error: no client has id 99\n"


def test_a_caller_who_is_not_admin_gets_a_one_line_error(
        control: EmbeddedControl) -> None:
    control.admin = False
    for args in (("freeze", "web"), ("weight", "--all", "5"),
                 ("flush", "1")):
        result = tmem_cli(control, "ctl", *args)
        assert result.exit_code == 2
        assert result.output.startswith("tmem: error: '")
        assert result.output.endswith(
            " needs an admin connection; this one is not\n")
        assert result.output.count("\n") == 1
    assert not client(control, "web").frozen
    assert tmem_cli(control, "list").exit_code == 0  # reading is allowed


def test_bad_usage_is_refused_before_any_call(control: EmbeddedControl
                                              ) -> None:
    control.disconnect()  # any call would fail differently
    for args in (("freeze",), ("freeze", "web", "--all"),
                 ("weight", "web"), ("weight", "web", "heavy")):
        result = tmem_cli(control, "ctl", *args)
        assert result.exit_code == 2
        assert "Usage:" in result.output or "Invalid value" in \
            result.output
    result = tmem_cli(control, "ctl", "freeze", "web", "--all")
    assert "give CLIENT or --all, not both" in result.output
    assert control.calls == 0


def test_negative_values_are_checked_not_taken_for_options(
        control: EmbeddedControl) -> None:
    result = tmem_cli(control, "ctl", "weight", "web", "-5")
    assert result.exit_code == 2
    assert "'-5' must be a whole number >= 0" in result.output
    result = tmem_cli(control, "ctl", "flush", "-1")
    assert result.exit_code == 2
    assert "-1.0 must be a finite number above 0" in result.output
    for value in ("nan", "inf", "1e400"):
        result = tmem_cli(control, "ctl", "flush", value)
        assert result.exit_code == 2
        assert "must be a finite number above 0" in result.output
    result = tmem_cli(control, "ctl", "cap", "web", "-1")
    assert result.exit_code == 2
    assert "'-1'" in result.output and "No such option" not in \
        result.output


def test_a_lost_daemon_is_a_one_line_error(control: EmbeddedControl
                                           ) -> None:
    control.disconnect()
    result = tmem_cli(control, "ctl", "thaw", "--all")
    assert result.exit_code == 2
    assert result.output == ("tmem: error: daemon 'embedded' is not "
                             "answering: connection refused\n")


# -- tmem top -b -------------------------------------------------------------


def test_top_batch_prints_n_frames(control: EmbeddedControl) -> None:
    result = tmem_cli(control, "top", "-b", "-n", "2", "-d", "0.01")
    assert result.exit_code == 0, result.output
    assert result.output.count("tmem top: connected") == 2
    assert result.output.count(" ID NAME") == 2
    assert " 1 web " in result.output


def test_top_batch_fails_when_its_last_frame_found_no_daemon(
        control: EmbeddedControl) -> None:
    control.disconnect()
    result = tmem_cli(control, "top", "-b", "-n", "1")
    assert result.exit_code == 1, result.output
    assert result.output.startswith("tmem top: disconnected")


def test_top_iterations_need_batch_mode(control: EmbeddedControl) -> None:
    result = tmem_cli(control, "top", "-n", "2")
    assert result.exit_code == 2
    assert "-n/--iterations works only with -b/--batch" in result.output
