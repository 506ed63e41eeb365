# criguard's %preun ($1: 0 on erase, 1 on upgrade). On erase criguard and its
# socket stop and are disabled; kubelet is left alone.
if [ "$1" -eq 0 ]; then
	systemctl disable --now criguard.service criguard.socket >/dev/null 2>&1 || :
fi
