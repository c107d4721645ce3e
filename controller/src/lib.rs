//! The ferrolb controller: the IP allocator and (later) the Kubernetes reconciler.
