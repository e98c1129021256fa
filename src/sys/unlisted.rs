//! Listing, inspecting and collecting names, for a platform that offers no
//! way to enumerate its named objects (Windows has no public listing of
//! named sections, macOS none of POSIX shared-memory names): each is
//! [`crate::Error::Unsupported`]. A backend that cannot list re-exports these.

/// Listing names: not possible here (what the registry shows).
pub(crate) fn list_named() -> crate::Result<Vec<super::ListedName>> {
    Err(crate::Error::Unsupported {
        what: "listing named objects on this platform",
    })
}

/// Describing a name: not possible here (what the registry shows).
pub(crate) fn describe_named(_os_name: &str) -> crate::Result<Option<super::ListedName>> {
    Err(crate::Error::Unsupported {
        what: "inspecting named objects on this platform",
    })
}

/// Reclaiming stale names by listing them: not possible here.
pub(crate) fn reclaim_if_stale(
    _os_name: &str,
    _dry_run: bool,
    _trust: &crate::owner::Trust,
) -> crate::Result<std::result::Result<(), String>> {
    Err(crate::Error::Unsupported {
        what: "removing stale names on this platform",
    })
}
