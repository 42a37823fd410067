module kuberay-rs.local/pause

go 1.26
