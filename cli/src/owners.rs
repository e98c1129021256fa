//! Users on the command line: `--allow-owner USER` (a user name, a uid, a
//! Windows SID, or `any`), and owners shown by name in `ls` and `stat`.

use shmio::Owner;

/// An owner whose objects a command may open, besides the caller's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// Any owner at all.
    Any,
    /// This one.
    Owner(Owner),
}

/// Parses `--allow-owner`'s value: `any`, a number (a uid), a SID
/// (`S-1-...`), or a user name (Unix).
pub fn parse(text: &str) -> Result<Allowed, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("any") {
        return Ok(Allowed::Any);
    }
    if let Ok(uid) = text.parse::<u32>() {
        return Ok(Allowed::Owner(Owner::Uid(uid)));
    }
    if text.starts_with("S-") {
        return Ok(Allowed::Owner(Owner::Sid(text.to_owned())));
    }
    match uid_of(text) {
        Some(uid) => Ok(Allowed::Owner(Owner::Uid(uid))),
        None => Err(format!(
            "{text:?} is not a known user (give a user name, a uid, a SID, or `any`)"
        )),
    }
}

/// Applies `allowed` to a builder through its `allow_owner` and
/// `allow_any_owner` methods.
pub fn trust<B>(
    builder: &mut B,
    allowed: &[Allowed],
    allow_owner: fn(&mut B, Owner) -> &mut B,
    allow_any_owner: fn(&mut B, bool) -> &mut B,
) {
    for allowed in allowed {
        match allowed {
            Allowed::Any => {
                allow_any_owner(builder, true);
            }
            Allowed::Owner(owner) => {
                allow_owner(builder, owner.clone());
            }
        }
    }
}

/// An owner as people read it: the user's name where it is known.
pub fn describe(owner: &Owner) -> String {
    match owner {
        Owner::Uid(uid) => name_of(*uid).unwrap_or_else(|| uid.to_string()),
        other => other.to_string(),
    }
}

/// The uid of the user called `name`.
#[cfg(unix)]
fn uid_of(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    let mut entry = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buffer` is writable for
    // its length; `found` is set to `entry` or null.
    let code = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            entry.as_mut_ptr(),
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if code != 0 || found.is_null() {
        return None;
    }
    // SAFETY: getpwnam_r filled `entry` (found points at it).
    Some(unsafe { entry.assume_init() }.pw_uid)
}

/// The name of the user `uid`.
#[cfg(unix)]
fn name_of(uid: u32) -> Option<String> {
    let mut entry = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in `uid_of`.
    let code = unsafe {
        libc::getpwuid_r(
            uid,
            entry.as_mut_ptr(),
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if code != 0 || found.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r filled `entry`, whose name points into `buffer`.
    let name = unsafe { std::ffi::CStr::from_ptr(entry.assume_init().pw_name) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(not(unix))]
fn uid_of(_name: &str) -> Option<u32> {
    None
}

#[cfg(not(unix))]
fn name_of(_uid: u32) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_parsed() {
        assert_eq!(parse("any"), Ok(Allowed::Any));
        assert_eq!(parse("65534"), Ok(Allowed::Owner(Owner::Uid(65534))));
        assert_eq!(
            parse("S-1-5-18"),
            Ok(Allowed::Owner(Owner::Sid("S-1-5-18".to_owned())))
        );
        assert!(parse("no-such-user-here").is_err());
        #[cfg(unix)]
        assert_eq!(parse("root"), Ok(Allowed::Owner(Owner::Uid(0))));
    }
}
