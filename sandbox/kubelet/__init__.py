"""sandbox/kubelet."""
