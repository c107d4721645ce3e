//! Kubernetes REST paths: `/api/v1/...` and `/apis/GROUP/VERSION/...`, namespaced or not,
//! with an optional `status` subresource.

/// A parsed resource path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResourcePath {
    /// `/api/v1` or `/apis/GROUP/VERSION`.
    pub prefix: String,
    /// The resource's plural name.
    pub plural: String,
    /// The namespace; `None` for cluster-scoped objects and all-namespace collections.
    pub namespace: Option<String>,
    /// The object's name, for object paths.
    pub name: Option<String>,
    /// Whether the path addresses the `status` subresource.
    pub status: bool,
}

impl ResourcePath {
    /// Parses a request path.
    pub fn parse(path: &str) -> Option<Self> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (prefix, rest) = match segments.as_slice() {
            ["api", "v1", rest @ ..] => ("/api/v1".to_string(), rest),
            ["apis", group, version, rest @ ..] => (format!("/apis/{group}/{version}"), rest),
            _ => return None,
        };
        let owned = |s: &&str| Some(s.to_string());
        let (plural, namespace, name, status) = match rest {
            ["namespaces", ns, plural] => (plural, owned(ns), None, false),
            ["namespaces", ns, plural, name] => (plural, owned(ns), owned(name), false),
            ["namespaces", ns, plural, name, "status"] => (plural, owned(ns), owned(name), true),
            [plural] => (plural, None, None, false),
            [plural, name] => (plural, None, owned(name), false),
            [plural, name, "status"] => (plural, None, owned(name), true),
            _ => return None,
        };
        Some(Self {
            prefix,
            plural: plural.to_string(),
            namespace,
            name,
            status,
        })
    }

    /// The path of an object of type `K`.
    pub fn for_object<K: kube::Resource<DynamicType = ()>>(
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Self {
        let group = K::group(&());
        let version = K::version(&());
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        Self {
            prefix,
            plural: K::plural(&()).to_string(),
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            status: false,
        }
    }

    /// The collection of this resource across namespaces.
    pub fn collection_all_namespaces(&self) -> Self {
        Self {
            namespace: None,
            name: None,
            status: false,
            ..self.clone()
        }
    }

    /// The key of the resource type (prefix and plural).
    pub fn resource(&self) -> String {
        format!("{}/{}", self.prefix, self.plural)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let p = ResourcePath::parse("/api/v1/namespaces/default/services/web/status").unwrap();
        assert_eq!(
            (
                p.plural.as_str(),
                p.namespace.as_deref(),
                p.name.as_deref(),
                p.status
            ),
            ("services", Some("default"), Some("web"), true)
        );
        let p = ResourcePath::parse("/api/v1/services").unwrap();
        assert_eq!((p.namespace, p.name), (None, None));
        let p = ResourcePath::parse("/api/v1/namespaces/kube-system").unwrap();
        assert_eq!(
            (p.plural.as_str(), p.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let p = ResourcePath::parse("/apis/coordination.k8s.io/v1/namespaces/x/leases/ferrolb")
            .unwrap();
        assert_eq!(p.resource(), "/apis/coordination.k8s.io/v1/leases");
        assert!(ResourcePath::parse("/healthz").is_none());
    }
}
