"""Local member clusters: real kube-apiservers (etcd, controller-manager, scheduler, KWOK) on loopback."""
