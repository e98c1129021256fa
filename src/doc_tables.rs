//! Keeps the layout tables in the module docs true: each table of a
//! module's docs is read from its source text and checked against the
//! `#[repr(C)]` struct it describes, so the docs cannot drift from the
//! bytes (tests only).
//!
//! A table's first column is the offset (`16`, `16..` or `2..4`: the start
//! counts). Its second names fields as `` `name: type` ``; the first named
//! field of a row starts at the row's offset, and any further ones follow
//! it without a gap, or, when the first is an array of a struct
//! (`` `members: [Member; 1024]` ``), describe that struct from its start.
//! A row that names no field is either padding (inside a `_`-named field)
//! or the end (the struct's size: what follows it, such as a ring's
//! slots). Every field but padding must be named, once.

/// A struct's layout: its fields in order, as the compiler lays them out.
pub(crate) struct Layout {
    pub(crate) name: &'static str,
    pub(crate) size: usize,
    pub(crate) fields: Vec<Field>,
}

/// One field of a [`Layout`].
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) offset: usize,
    pub(crate) size: usize,
}

impl Layout {
    /// The layout of a struct whose fields (all of them, padding too) are
    /// `fields`, in order: checked to leave no byte out, so a field added
    /// to the struct and not here is caught.
    pub(crate) fn new(name: &'static str, size: usize, fields: Vec<Field>) -> Layout {
        let mut end = 0;
        for field in &fields {
            assert_eq!(
                field.offset, end,
                "{name}.{} does not follow on",
                field.name
            );
            end += field.size;
        }
        assert_eq!(end, size, "{name}'s fields do not cover its {size} bytes");
        Layout { name, size, fields }
    }

    fn field(&self, name: &str) -> &Field {
        self.fields
            .iter()
            .find(|field| field.name == name)
            .unwrap_or_else(|| panic!("{} has no field `{name}`", self.name))
    }
}

/// The size of the field `field` picks out, without a value of `S`.
pub(crate) fn size_of_field<S, F>(_field: impl Fn(&S) -> &F) -> usize {
    size_of::<F>()
}

/// The [`Layout`] of the struct `$ty`, whose fields, padding included,
/// are listed in order.
macro_rules! layout {
    ($ty:ty { $($field:ident),* $(,)? }) => {
        $crate::doc_tables::Layout::new(
            stringify!($ty),
            size_of::<$ty>(),
            vec![$($crate::doc_tables::Field {
                name: stringify!($field),
                offset: ::core::mem::offset_of!($ty, $field),
                size: $crate::doc_tables::size_of_field(|s: &$ty| &s.$field),
            }),*],
        )
    };
}
pub(crate) use layout;

/// The object header's layout, which other layouts start with.
pub(crate) fn header() -> Layout {
    use crate::object::Header;
    layout!(Header {
        magic,
        ready,
        version
    })
}

/// The tables of the module docs in `source` (a module's own text), each a
/// list of rows of cells, without the header and separator rows.
fn tables(source: &str) -> Vec<Vec<Vec<String>>> {
    let mut tables = Vec::new();
    let mut current: Option<Vec<Vec<String>>> = None;
    let docs = source
        .lines()
        .map(str::trim_start)
        .take_while(|line| line.starts_with("//!") || line.is_empty());
    for line in docs {
        let line = line.trim_start_matches("//!").trim();
        if !line.starts_with('|') {
            tables.extend(current.take());
            continue;
        }
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().to_owned())
            .collect();
        match &mut current {
            // The header row: the separator row comes next.
            None => current = Some(Vec::new()),
            Some(_) if cells.iter().all(|cell| cell.chars().all(|c| c == '-')) => {}
            Some(rows) => rows.push(cells),
        }
    }
    tables.extend(current);
    tables
}

/// The size of the type `ty` as a table writes it: an integer, an array,
/// or one of `layouts` by name.
fn type_size(ty: &str, layouts: &[Layout]) -> usize {
    let ty = ty.trim();
    if let Some(array) = ty.strip_prefix('[').and_then(|ty| ty.strip_suffix(']')) {
        let (element, count) = array.rsplit_once(';').expect("an array type is [T; N]");
        let count: usize = count.trim().parse().expect("an array's length is a number");
        return type_size(element, layouts) * count;
    }
    match ty {
        "u8" | "i8" => 1,
        "u16" | "i16" => 2,
        "u32" | "i32" => 4,
        "u64" | "i64" => 8,
        _ => find(layouts, ty).size,
    }
}

fn find<'a>(layouts: &'a [Layout], name: &str) -> &'a Layout {
    layouts
        .iter()
        .find(|layout| layout.name == name)
        .unwrap_or_else(|| panic!("no layout `{name}` to check against"))
}

/// The array element type of `ty` if it is an array of one of `layouts`.
fn nested<'a>(ty: &str, layouts: &'a [Layout]) -> Option<&'a Layout> {
    let array = ty.trim().strip_prefix('[')?.strip_suffix(']')?;
    let element = array.rsplit_once(';')?.0.trim();
    layouts.iter().find(|layout| layout.name == element)
}

/// The fields a cell names, as `(name, type)`: each `` `name: type` ``.
fn named(cell: &str) -> Vec<(&str, &str)> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|code| code.split_once(": "))
        .filter(|(name, _)| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .collect()
}

/// Checks that the module docs in `source` have one table per name in
/// `described`, in order, and that each says what the layout of that name
/// (one of `layouts`, which also holds the layouts the tables mention)
/// says. Returns the number of rows checked.
pub(crate) fn check(source: &str, described: &[&str], layouts: &[Layout]) -> usize {
    let tables = tables(source);
    assert_eq!(
        tables.len(),
        described.len(),
        "the module docs have {} tables, checked against {described:?}",
        tables.len()
    );
    let mut rows = 0;
    for (table, name) in tables.iter().zip(described) {
        let layout = find(layouts, name);
        let mut seen = Vec::new();
        for row in table {
            check_row(row, layout, layouts, &mut seen);
            rows += 1;
        }
        for field in &layout.fields {
            assert!(
                field.name.starts_with('_') || seen.contains(&field.name),
                "{name}'s table does not name `{}`",
                field.name
            );
        }
    }
    rows
}

fn check_row(row: &[String], layout: &Layout, layouts: &[Layout], seen: &mut Vec<&'static str>) {
    let name = layout.name;
    let digits: String = row[0].chars().take_while(char::is_ascii_digit).collect();
    let offset: usize = digits
        .parse()
        .unwrap_or_else(|_| panic!("{name}'s table: row {row:?} has no offset"));
    let fields = row.get(1).map(|cell| named(cell)).unwrap_or_default();
    let Some(&(first, ty)) = fields.first() else {
        let padding = layout.fields.iter().any(|field| {
            field.name.starts_with('_')
                && (field.offset..field.offset + field.size).contains(&offset)
        });
        assert!(
            padding || offset == layout.size,
            "{name}'s table: row {row:?} names no field, and {offset} is neither padding nor \
             the end ({})",
            layout.size
        );
        return;
    };
    let field = layout.field(first);
    assert_eq!(field.offset, offset, "{name}.{first}'s offset");
    assert_eq!(type_size(ty, layouts), field.size, "{name}.{first}'s size");
    assert!(!seen.contains(&field.name), "{name}.{first} is named twice");
    seen.push(field.name);
    // The rest of the row: the fields of the array's element, or the
    // fields after the first.
    let (scope, mut at) = match nested(ty, layouts) {
        Some(element) => (element, 0),
        None => (layout, field.offset + field.size),
    };
    let mut inner = Vec::new();
    for &(next, ty) in &fields[1..] {
        let field = scope.field(next);
        assert_eq!(field.offset, at, "{}.{next}'s offset", scope.name);
        assert_eq!(
            type_size(ty, layouts),
            field.size,
            "{}.{next}'s size",
            scope.name
        );
        at += field.size;
        if std::ptr::eq(scope, layout) {
            assert!(!seen.contains(&field.name), "{name}.{next} is named twice");
            seen.push(field.name);
        } else {
            inner.push(field.name);
        }
    }
    if !std::ptr::eq(scope, layout) {
        for field in &scope.fields {
            assert!(
                field.name.starts_with('_') || inner.contains(&field.name),
                "{name}.{first}'s row does not name {}.{}",
                scope.name,
                field.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tables_and_names() {
        let source = "//! Docs.\n//!\n//! | offset | field |\n//! |---|---|\n//! | 0 | `a: u32`, `b: u32` |\n//! | 8.. | the rest |\n//!\n//! | x | y |\n//! |---|---|\n//! | 1 | 2 |\n\nuse x;\n//! | 9 | not docs |\n";
        let tables = tables(source);
        assert_eq!(tables.len(), 2);
        assert_eq!(tables[0][0], ["0", "`a: u32`, `b: u32`"]);
        assert_eq!(tables[1], [["1", "2"]]);
        assert_eq!(
            named(tables[0][0][1].as_str()),
            [("a", "u32"), ("b", "u32")]
        );
        assert_eq!(named("[`Kind`], `READY`, `x: y`"), [("x", "y")]);
        assert_eq!(type_size("[u32; 1024]", &[]), 4096);
        assert_eq!(type_size("Header", &[header()]), 16);
    }

    #[test]
    #[should_panic(expected = "offset")]
    fn a_wrong_offset_is_caught() {
        let source = "//! | offset | field |\n//! |---|---|\n//! | 4 | `magic: u64` |\n";
        check(source, &["Header"], &[header()]);
    }
}
