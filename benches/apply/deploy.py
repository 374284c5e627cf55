# The same workload for pyinfra (v3).
from pyinfra import host, inventory
from pyinfra.operations import files, systemd
from pyinfra.operations.util import any_changed

addresses = [h.data.get("ssh_hostname", h.name) for h in inventory]
dirs = [files.directory(name=f"dir {d}", path=f"/opt/bench-pyinfra/{d}", mode="755") for d in ("bin", "etc")]
blob = files.put(name="blob", src="blob", dest="/opt/bench-pyinfra/bin/blob", mode="755")
confs = [
    files.template(name=f"conf {c}", src="bench.conf.j2", dest=f"/opt/bench-pyinfra/etc/{c}.conf", addresses=addresses)
    for c in ("a", "b", "c")
]
unit = files.put(name="unit", src="bench-pyinfra.service", dest="/etc/systemd/system/bench-pyinfra.service")
systemd.service(name="running", service="bench-pyinfra", running=True, enabled=True, daemon_reload=True, _if=unit.did_change)
systemd.service(name="restart", service="bench-pyinfra", running=True, restarted=True, _if=any_changed(blob, unit, *confs))
