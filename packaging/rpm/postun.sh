# criguard's %postun ($1: 0 on erase, 1 on upgrade). An upgrade restarts
# criguard.service only: the socket stays open, kubelet's calls wait in its
# backlog. rpm has no purge: /var/lib/criguard stays after an erase.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || :
	if [ "$1" -ge 1 ]; then
		systemctl try-restart criguard.service >/dev/null 2>&1 || :
	fi
fi
