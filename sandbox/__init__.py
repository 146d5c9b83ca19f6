"""Stand-ins for the outside world (a real control plane, a simulated kubelet, a local Slack).

Used by the tests and by `release-bot sandbox`; the product itself never imports this package.
"""
