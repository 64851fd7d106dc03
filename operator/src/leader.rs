//! Placeholder: leader election on a coordination.k8s.io Lease (owner: identity helper).
