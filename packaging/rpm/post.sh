# criguard's %post ($1: 1 on install, 2 on upgrade). A fresh install enables and
# starts criguard.socket and criguard.service; the upgrade's restart is in %postun,
# which runs after the old files are gone.
if [ "$1" -eq 1 ]; then
	systemctl enable criguard.socket criguard.service >/dev/null 2>&1 || :
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload >/dev/null 2>&1 || :
		systemctl start criguard.socket criguard.service >/dev/null 2>&1 || :
	fi
	echo "criguard runs with /etc/criguard/policy.hcl, which throttles nothing; kubelet is unchanged (see criguard(8))."
fi
