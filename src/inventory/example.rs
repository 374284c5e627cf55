//! The commented example inventory that `k8sup init` writes. It documents
//! every key in place, and a test checks that it passes validation as is.

/// A complete, valid, commented inventory: one control plane, two workers.
pub const EXAMPLE_INVENTORY: &str = r#"# k8sup inventory: one file describes the whole cluster.
# Check it with:  k8sup inventory check -i inventory.yaml
#
# Any string value may use ${VAR} or ${VAR:-default} to take its value from
# the environment (keep secrets out of this file); write $${ for a literal ${.

apiVersion: k8sup.io/v1alpha1
kind: Cluster

cluster:
  name: demo                        # lowercase letters, digits and '-'
  kubernetesVersion: v1.37.2
  # The defaults below need not be written; change them only if they clash
  # with your network.
  podCIDR: 10.1.0.0/16
  serviceCIDR: 10.152.183.0/24
  clusterDomain: cluster.local
  apiServer:
    port: 6443
    extraSANs: []                   # extra names/IPs for the API certificate, e.g. [k8s.example.com]
    # endpoint: k8s.example.com:6443  # a load balancer: the server `k8sup kubeconfig` writes
  datastore:
    type: k8sup                     # k8sup | external (your etcd: servers, caFile, certFile, keyFile)
    clientPort: 2379
    peerPort: 2380
    dataDir: /var/lib/k8sup/datastore
  kubeProxyMode: iptables           # iptables | nftables (needs nft on the nodes)
  controlPlaneTaints: []            # e.g. [node-role.kubernetes.io/control-plane:NoSchedule]
  # artifacts:
  #   source: https://mirror.example.com/   # default: the official release locations
  #   images: registry                # registry | archives (imported on each node)
  # containerRuntime:
  #   registryMirrors:
  #     docker.io: [https://mirror.example.com:5000]
  # Flags for the components on every host (a host's own extraArgs apply
  # after these): a value sets or replaces a flag, null removes k8sup's.
  # extraArgs:
  #   kube-apiserver: { --audit-log-maxage: 30 }
  #   kubelet: { --max-pods: 200 }

options:
  concurrency: 64                   # hosts worked on at once

# SSH defaults for every host; each host can override any of them under its
# own 'ssh:'.
ssh:
  user: root                        # a non-root user needs sudo (see 'sudo')
  port: 22
  # identityFile: ~/.ssh/id_ed25519 # relative paths are relative to this file
  agent: true                       # use ssh-agent when SSH_AUTH_SOCK is set
  hostKeyPolicy: strict             # strict: host keys must be in known_hosts; accept-new: trust on first use
  # knownHostsFile: ./known_hosts   # default: ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts
  # proxyJump: bastion              # an inventory host name, or [user@]host[:port]
  sudo: auto                        # auto (when user is not root) | always | never
  # sudoPasswordEnv: K8SUP_SUDO_PASSWORD  # NAME of the variable holding the sudo password
  connectTimeout: 10s
  retries: 2
  useSshConfig: true                # honour ~/.ssh/config (Host aliases, HostName, User, Port, ...)

hosts:
  # name: becomes the Kubernetes node name (unique, lowercase DNS label)
  # address: IP, DNS name or ~/.ssh/config alias
  # role: control-plane | worker  (use 1 or 3 control planes; 3 for high availability)
  - name: cp-1
    address: 192.0.2.11
    role: control-plane
    groups: [rack-a]
  - name: worker-1
    address: 192.0.2.21
    role: worker
    groups: [rack-a]
  - name: worker-2
    address: 192.0.2.22
    role: worker
    groups: [rack-b]
    ssh: { user: ubuntu, port: 2222 }   # per-host overrides of the defaults above
    vars: { gpu: false }                # free-form values for templates
    # extraArgs: { kubelet: { --max-pods: 50 } }  # this host's component flags
"#;
