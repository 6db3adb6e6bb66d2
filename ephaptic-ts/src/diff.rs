//! A line diff for stale-schema messages: the longest common subsequence of lines (after the
//! common prefix and suffix are set aside), shown as unified-diff hunks with a little context,
//! so that one added function reads as its added lines and nothing else.

/// Lines of context around each change.
const CONTEXT: usize = 2;

/// Past this many cells (lines × lines of the part that differs) the table would be too big;
/// the middle is then shown as removed and added in one block.
const MAX_CELLS: usize = 4_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same,
    Removed,
    Added,
}

/// `old` against `new` as unified-diff hunks (`@@ -a,b +c,d @@`, then ` `, `-` and `+` lines).
pub(crate) fn lines(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = script(&a, &b);

    // Each op with its line numbers (1-based) in `a` and `b` before it applies.
    let mut at = Vec::with_capacity(ops.len());
    let (mut i, mut j) = (0usize, 0usize);
    for &op in &ops {
        at.push((op, i, j));
        match op {
            Op::Same => {
                i += 1;
                j += 1;
            }
            Op::Removed => i += 1,
            Op::Added => j += 1,
        }
    }

    // Hunks: runs of changes, each with CONTEXT lines around, merged when they touch.
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k] != Op::Same).collect();
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &k in &changed {
        let start = k.saturating_sub(CONTEXT);
        let end = (k + CONTEXT + 1).min(ops.len());
        match hunks.last_mut() {
            Some((_, last_end)) if start <= *last_end => *last_end = end,
            _ => hunks.push((start, end)),
        }
    }

    let mut out = String::new();
    for (start, end) in hunks {
        let (_, i0, j0) = at[start];
        let removed = at[start..end]
            .iter()
            .filter(|(op, ..)| *op != Op::Added)
            .count();
        let added = at[start..end]
            .iter()
            .filter(|(op, ..)| *op != Op::Removed)
            .count();
        out.push_str(&format!(
            "@@ -{} +{} @@\n",
            range(i0, removed),
            range(j0, added)
        ));
        for &(op, i, j) in &at[start..end] {
            let (mark, line) = match op {
                Op::Same => (' ', a[i]),
                Op::Removed => ('-', a[i]),
                Op::Added => ('+', b[j]),
            };
            out.push(mark);
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `start,len` as unified diffs write it (`start` is the line before when `len` is 0).
fn range(start: usize, len: usize) -> String {
    match len {
        0 => format!("{start},0"),
        1 => format!("{}", start + 1),
        _ => format!("{},{len}", start + 1),
    }
}

/// The edit script from `a` to `b`.
fn script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops = vec![Op::Same; prefix];
    if ma.len().saturating_mul(mb.len()) > MAX_CELLS {
        ops.extend(std::iter::repeat_n(Op::Removed, ma.len()));
        ops.extend(std::iter::repeat_n(Op::Added, mb.len()));
    } else {
        ops.extend(lcs(ma, mb));
    }
    ops.extend(std::iter::repeat_n(Op::Same, suffix));
    ops
}

/// The classic table: `len[i][j]` is the LCS length of `a[i..]` and `b[j..]`; walking it from
/// the start keeps lines, and prefers removals before additions within a change.
fn lcs(a: &[&str], b: &[&str]) -> Vec<Op> {
    let w = b.len() + 1;
    let mut len = vec![0u32; (a.len() + 1) * w];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            len[i * w + j] = if a[i] == b[j] {
                len[(i + 1) * w + j + 1] + 1
            } else {
                len[(i + 1) * w + j].max(len[i * w + j + 1])
            };
        }
    }
    let mut ops = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            ops.push(Op::Same);
            i += 1;
            j += 1;
        } else if len[(i + 1) * w + j] >= len[i * w + j + 1] {
            ops.push(Op::Removed);
            i += 1;
        } else {
            ops.push(Op::Added);
            j += 1;
        }
    }
    ops.extend(std::iter::repeat_n(Op::Removed, a.len() - i));
    ops.extend(std::iter::repeat_n(Op::Added, b.len() - j));
    ops
}

#[cfg(test)]
mod tests {
    use super::lines;

    #[test]
    fn a_changed_line_is_one_removal_and_one_addition_with_context() {
        assert_eq!(
            lines("a\nb\nc\nd\ne\nf\n", "a\nb\nC\nd\ne\nf\n"),
            "@@ -1,5 +1,5 @@\n a\n b\n-c\n+C\n d\n e\n"
        );
    }

    #[test]
    fn an_added_function_is_only_its_added_lines() {
        // Two methods added in the middle of an interface whose other lines all stay: the
        // prefix/suffix trim alone would churn everything between the first and last change.
        let old = "interface S {\n  a(): 1;\n  b(): 2;\n  c(): 3;\n  d(): 4;\n  dd(): 4;\n  e(): 5;\n  f(): 6;\n}\n";
        let new = "interface S {\n  a(): 1;\n  /** New. */\n  aa(): 9;\n  b(): 2;\n  c(): 3;\n  d(): 4;\n  dd(): 4;\n  e(): 5;\n  ee(): 8;\n  f(): 6;\n}\n";
        let d = lines(old, new);
        let plus: Vec<&str> = d.lines().filter(|l| l.starts_with('+')).collect();
        assert_eq!(plus, ["+  /** New. */", "+  aa(): 9;", "+  ee(): 8;"]);
        assert!(!d.lines().any(|l| l.starts_with('-')), "{d}");
        assert_eq!(d.matches("@@ -").count(), 2, "two separate hunks: {d}");
        assert!(
            d.starts_with("@@ -1,4 +1,6 @@\n interface S {\n   a(): 1;\n+"),
            "{d}"
        );
    }

    #[test]
    fn removals_at_the_ends_and_empty_sides() {
        assert_eq!(lines("a\nb\n", "b\n"), "@@ -1,2 +1 @@\n-a\n b\n");
        assert_eq!(lines("a\n", "a\nb\n"), "@@ -1 +1,2 @@\n a\n+b\n");
        assert_eq!(lines("", "x\n"), "@@ -0,0 +1 @@\n+x\n");
        assert_eq!(lines("x\n", ""), "@@ -1 +0,0 @@\n-x\n");
        assert_eq!(lines("same\n", "same\n"), "");
    }
}
