"""Inventory and .env input a hostile (or merely careless) user writes: each is refused with exit 2, naming the
file, the line (both lines, for a duplicate) and what to fix -- never resolved silently, never a traceback."""

from __future__ import annotations

from tests.test_inventory_errors import ENV, INVENTORY, assert_clean_failure


def test_an_instance_defined_twice_is_refused_naming_both_lines(project):
    twice = INVENTORY.replace("  local:\n", "  qwen-g5:\n    host: 203.0.113.99\n    user: ubuntu\n"
                                            "    work_dir: /w\n    models_dir: /m\n  local:\n")
    project.write("inventory.yaml", twice)
    project.write(".env", ENV)
    run = project.orch("show", "qwen")
    assert_clean_failure(run)
    assert "inventory.yaml" in run.stderr and "qwen-g5" in run.stderr
    first = INVENTORY.splitlines().index("  qwen-g5:") + 1
    second = twice.splitlines().index("  qwen-g5:", first) + 1
    assert f"lines {first} and {second}" in run.stderr


def test_a_field_repeated_inside_an_instance_is_refused_naming_both_lines(project):
    project.write("inventory.yaml", INVENTORY.replace("    user: ubuntu\n", "    user: ubuntu\n    host: 203.0.113.7\n", 1))
    project.write(".env", ENV)
    run = project.orch("show", "qwen")
    assert_clean_failure(run)
    assert "'host'" in run.stderr and "lines 5 and 7" in run.stderr


def test_a_variable_defined_twice_in_the_env_file_is_refused_naming_both_lines(project):
    project.write("inventory.yaml", INVENTORY)
    project.write(".env", ENV + "OTHER=1\nQWEN_GPU_INSTANCE_IP=203.0.113.66\n")
    run = project.orch("show", "qwen")
    assert_clean_failure(run)
    assert "QWEN_GPU_INSTANCE_IP" in run.stderr and "lines 2 and 4" in run.stderr and ".env" in run.stderr


def test_an_inventory_that_is_not_utf8_is_refused_naming_the_file_and_byte_offset(project):
    raw = INVENTORY.encode().replace(b"user: ubuntu", b"user: ub\xffuntu", 1)
    (project.root / "inventory.yaml").write_bytes(raw)
    run = project.orch("show", "qwen")
    assert_clean_failure(run)
    assert "inventory.yaml" in run.stderr and f"byte {raw.index(bytes([0xff]))}" in run.stderr
    assert "UnicodeDecodeError" not in run.stderr


def test_a_binary_inventory_is_refused_naming_the_file(project):
    (project.root / "inventory.yaml").write_bytes(b"\x00\x01\x02binary\x00garbage\x89PNG")
    run = project.orch("show", "qwen")
    assert_clean_failure(run)
    assert "inventory.yaml" in run.stderr and "byte 0" in run.stderr


def test_an_env_file_that_is_not_utf8_is_refused_naming_the_file_and_byte_offset(project):
    project.write("inventory.yaml", INVENTORY)
    raw = ENV.encode() + b"BAD=\xc3\x28\n"
    (project.root / ".env").write_bytes(raw)
    run = project.orch("show", "qwen")
    assert_clean_failure(run)
    assert ".env" in run.stderr and f"byte {raw.index(bytes([0xc3]))}" in run.stderr
    assert "UnicodeDecodeError" not in run.stderr


def test_a_host_with_spaces_or_a_leading_dash_is_bad_input_naming_the_field_and_its_origin(project):
    project.write("inventory.yaml", INVENTORY)
    for host in ("203.0.113.10 -oProxyCommand=x", "-oProxyCommand=touch_pwned"):
        project.write(".env", ENV.replace("QWEN_GPU_INSTANCE_IP=203.0.113.10", f"QWEN_GPU_INSTANCE_IP={host}"))
        run = project.orch("preflight", "qwen")
        assert_clean_failure(run)
        assert "host" in run.stderr and "QWEN_GPU_INSTANCE_IP" in run.stderr
        assert "cannot resolve" not in run.stderr and "refused the key" not in run.stderr


def test_a_user_with_a_leading_dash_is_bad_input_naming_the_field(project):
    project.write("inventory.yaml", INVENTORY.replace("    user: ubuntu", "    user: -oProxyCommand=x"))
    project.write(".env", ENV)
    run = project.orch("preflight", "qwen")
    assert_clean_failure(run)
    assert "user" in run.stderr and "inventory.yaml:6" in run.stderr
    assert "refused the key" not in run.stderr


def test_one_instance_with_a_bad_field_does_not_block_the_jobs_of_another(project):
    project.write("inventory.yaml", INVENTORY.replace("    user: ubuntu", "    user: ubuntu\n    port: many"))
    project.write(".env", ENV)
    ok = project.orch("show", "demo")
    assert ok.code == 0, ok.stderr
    broken = project.orch("show", "qwen")
    assert_clean_failure(broken)
    assert "port" in broken.stderr and "inventory.yaml:7" in broken.stderr
