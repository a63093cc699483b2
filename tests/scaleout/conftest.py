"""The scale-out test gets its own vhost and process tree, like the fault-injection tests."""

from tests.faults.conftest import fault_dir, vhost_url  # noqa: F401 - fixtures re-exported
