//! A small reader (and writer) for MATLAB level-5 `.mat` files, enough for SVHN and SynDigits.
//!
//! Layout: a 128-byte header (descriptive text, subsystem offset, version `0x0100`, endian
//! indicator `IM` for little-endian files, `MI` for big-endian), then data elements. Each element
//! has an 8-byte tag (type, byte count), or a 4-byte "small element" tag when the byte count
//! (upper 16 bits) is non-zero, and its data padded to 8 bytes. A variable is an `miMATRIX`
//! element holding sub-elements: array flags (class), dimensions, name, real part. MATLAB and
//! Octave usually wrap each variable in an `miCOMPRESSED` element (zlib), scipy does not.
//!
//! Only numeric (non-complex, non-sparse) arrays are decoded; other variables are skipped, so a
//! file with extra cell or struct variables still loads. v7.3 (HDF5) files are recognised and
//! rejected with a message saying so.
use crate::Result;
use crate::raw::{MAX_DEFLATE_RATIO, expect_end, format_err, io_err, read_exactly, read_file};
use std::io::Write;
use std::path::Path;

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;

/// MATLAB array class of a `uint8` array (`mxUINT8_CLASS`).
pub const CLASS_UINT8: u8 = 9;
/// MATLAB array class of a `double` array (`mxDOUBLE_CLASS`).
pub const CLASS_DOUBLE: u8 = 6;

/// The values of a numeric array: kept as bytes when stored as `miUINT8` (images are big), widened
/// to `f64` otherwise (labels and anything else are small).
#[derive(Debug, Clone, PartialEq)]
pub enum MatData {
    U8(Vec<u8>),
    F64(Vec<f64>),
}

impl MatData {
    pub fn len(&self) -> usize {
        match self {
            MatData::U8(v) => v.len(),
            MatData::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at `i` as `f64`.
    pub fn get(&self, i: usize) -> f64 {
        match self {
            MatData::U8(v) => v[i] as f64,
            MatData::F64(v) => v[i],
        }
    }
}

/// One numeric variable; `data` is in MATLAB's column-major order over `dims`.
#[derive(Debug, Clone, PartialEq)]
pub struct MatArray {
    pub name: String,
    /// MATLAB class (`mxCLASS`), e.g. [`CLASS_UINT8`], [`CLASS_DOUBLE`].
    pub class: u8,
    pub dims: Vec<usize>,
    pub data: MatData,
}

/// Reads every numeric variable of a `.mat` file.
pub fn read_mat(path: &Path) -> Result<Vec<MatArray>> {
    let bytes = read_file(path)?;
    parse_mat(path, &bytes)
}

#[derive(Clone, Copy)]
struct Endian {
    big: bool,
}

impl Endian {
    fn u32(self, b: &[u8]) -> u32 {
        let a: [u8; 4] = b[..4].try_into().expect("4 bytes");
        if self.big { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) }
    }
}

/// Parses `.mat` bytes; `path` is only used in error messages.
pub fn parse_mat(path: &Path, bytes: &[u8]) -> Result<Vec<MatArray>> {
    if bytes.len() < 128 {
        return Err(format_err(path, format!("too short for a MAT-file header ({} of 128 bytes)", bytes.len())));
    }
    if bytes.starts_with(b"MATLAB 7.3") || bytes.starts_with(b"\x89HDF") {
        return Err(format_err(path, "MATLAB v7.3 (HDF5) file; re-save it with `save -v7` or scipy.io.savemat"));
    }
    let endian = match &bytes[126..128] {
        b"IM" => Endian { big: false },
        b"MI" => Endian { big: true },
        other => {
            return Err(format_err(
                path,
                format!("not a MATLAB v5 file: endian indicator {other:02x?} at byte 126 (expected 'IM' or 'MI')"),
            ));
        }
    };
    let mut out = Vec::new();
    parse_elements(path, &bytes[128..], endian, 0, &mut out)?;
    Ok(out)
}

/// Reads a tag at `b[0..]`: `(type, nbytes, header_len)`; small elements have header length 4.
fn read_tag(path: &Path, b: &[u8], e: Endian, at: usize) -> Result<(u32, usize, usize)> {
    if b.len() < 8 {
        // A small element needs 8 bytes in all too (4 tag + 4 data).
        return Err(format_err(path, format!("truncated data element tag at offset {at}")));
    }
    let first = e.u32(b);
    if first >> 16 != 0 {
        Ok((first & 0xffff, (first >> 16) as usize, 4))
    } else {
        Ok((first, e.u32(&b[4..]) as usize, 8))
    }
}

fn parse_elements(path: &Path, mut b: &[u8], e: Endian, depth: usize, out: &mut Vec<MatArray>) -> Result<()> {
    let mut offset = 128usize;
    while !b.is_empty() {
        // scipy and MATLAB may leave fewer than 8 zero bytes of padding at the end of a stream.
        if b.len() < 8 && b.iter().all(|&x| x == 0) {
            break;
        }
        let (ty, n, hdr) = read_tag(path, b, e, offset)?;
        if hdr == 4 {
            // A small element at top level carries no variable.
            b = &b[8..];
            offset += 8;
            continue;
        }
        let body = b.get(8..8 + n).ok_or_else(|| {
            format_err(
                path,
                format!("truncated data element at offset {offset}: needs {n} bytes, {} left", b.len() - 8),
            )
        })?;
        match ty {
            MI_COMPRESSED => {
                if depth > 0 {
                    return Err(format_err(path, format!("nested compressed element at offset {offset}")));
                }
                let inner = inflate_element(path, body, e, offset)?;
                parse_elements(path, &inner, e, depth + 1, out)?;
            }
            MI_MATRIX => {
                if let Some(a) = parse_matrix(path, body, e, offset + 8)? {
                    out.push(a);
                }
            }
            // Other top-level element types carry nothing we need.
            _ => {}
        }
        // Compressed elements are not padded; everything else is padded to 8 bytes.
        let mut step = 8 + n;
        if ty != MI_COMPRESSED {
            step = step.div_ceil(8) * 8;
        }
        b = if step >= b.len() { &[] } else { &b[step..] };
        offset += step;
    }
    Ok(())
}

/// Bytes of a compressed element's inflated start that are checked against its matrix header
/// before the rest is inflated.
const PREFLIGHT: u64 = 64 << 10;

/// Inflates the compressed element `body` (at `offset`): exactly the one element it holds, whose
/// tag declares its size. The declared size is refused when the compressed bytes could not hold
/// it, and a matrix whose dimensions need less than it declares is refused from its header,
/// before the rest is inflated: a zlib bomb never gets further than its first kilobytes.
fn inflate_element(path: &Path, body: &[u8], e: Endian, offset: usize) -> Result<Vec<u8>> {
    let what = format!("compressed element at offset {offset}");
    let mut z = flate2::read::ZlibDecoder::new(body);
    let mut inner = Vec::new();
    read_exactly(path, &mut z, 8, &mut inner, &what)?;
    let (ty, n, hdr) = read_tag(path, &inner, e, offset)?;
    let total = if hdr == 4 { 8 } else { 8 + n as u64 };
    if total > (body.len() as u64).saturating_mul(MAX_DEFLATE_RATIO) + 64 {
        return Err(format_err(
            path,
            format!("{what} declares {total} bytes, more than its {} compressed bytes can hold", body.len()),
        ));
    }
    let first = total.min(8 + PREFLIGHT);
    read_exactly(path, &mut z, first - 8, &mut inner, &what)?;
    if ty == MI_MATRIX && hdr == 8 {
        let complete = first == total;
        if let Some(layout) = matrix_layout(path, &inner[8..], e, offset + 8, complete)?
            && layout.numeric
            && (n as u64) > layout.needed.div_ceil(8) * 8 + 64
        {
            return Err(format_err(
                path,
                format!(
                    "{what}: variable '{}' declares {n} bytes, but its dimensions {:?} need {}",
                    layout.name, layout.dims, layout.needed
                ),
            ));
        }
    }
    read_exactly(path, &mut z, total - first, &mut inner, &what)?;
    expect_end(path, &mut z, &what, total)?;
    Ok(inner)
}

/// One sub-element of a matrix: `(type, data, bytes consumed including padding)`.
fn sub_element<'a>(path: &Path, b: &'a [u8], e: Endian, at: usize, what: &str) -> Result<(u32, &'a [u8], usize)> {
    let (ty, n, hdr) =
        read_tag(path, b, e, at).map_err(|_| format_err(path, format!("truncated {what} tag at offset {at}")))?;
    if hdr == 4 {
        if n > 4 {
            return Err(format_err(path, format!("bad small {what} element at offset {at}: {n} bytes")));
        }
        return Ok((ty, &b[4..4 + n], 8));
    }
    let data = b.get(8..8 + n).ok_or_else(|| {
        format_err(path, format!("truncated {what} at offset {at}: needs {n} bytes, {} left", b.len() - 8))
    })?;
    Ok((ty, data, (8 + n).div_ceil(8) * 8))
}

/// What a matrix's header says, read before its data.
struct Layout {
    name: String,
    class: u8,
    dims: Vec<usize>,
    /// A non-complex numeric class: the only variables decoded.
    numeric: bool,
    /// Offset of the real part's tag inside the matrix body.
    data_at: usize,
    /// Bytes of the body up to the end of the real part its dimensions need (0 if not numeric).
    needed: u64,
}

/// Bytes per stored value of an mi type, for the types [`decode_numeric`] reads.
fn value_size(ty: u32) -> Option<u64> {
    Some(match ty {
        MI_INT8 | MI_UINT8 => 1,
        MI_INT16 | MI_UINT16 => 2,
        MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
        MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
        _ => return None,
    })
}

/// Reads the array flags, dimensions, name and the real part's tag of the matrix body `b` (at
/// `at`). `complete`: `b` is the whole body; otherwise a header cut short by the end of `b` gives
/// `None` (nothing to say yet) rather than an error.
fn matrix_layout(path: &Path, b: &[u8], e: Endian, at: usize, complete: bool) -> Result<Option<Layout>> {
    match matrix_layout_inner(path, b, e, at) {
        Err(_) if !complete => Ok(None),
        other => other,
    }
}

fn matrix_layout_inner(path: &Path, b: &[u8], e: Endian, at: usize) -> Result<Option<Layout>> {
    if b.is_empty() {
        return Ok(None); // scipy writes empty miMATRIX elements for empty variables.
    }
    let mut pos = 0usize;
    let (ty, flags, used) = sub_element(path, b, e, at, "array flags")?;
    if ty != MI_UINT32 || flags.len() != 8 {
        return Err(format_err(path, format!("bad array flags at offset {at}: type {ty}, {} bytes", flags.len())));
    }
    pos += used;
    let flag_word = e.u32(flags);
    let class = (flag_word & 0xff) as u8;
    let complex = flag_word & 0x0800 != 0;
    let rest = b.get(pos..).unwrap_or(&[]);
    let (ty, dims_raw, used) = sub_element(path, rest, e, at + pos, "dimensions")?;
    if ty != MI_INT32 || dims_raw.len() % 4 != 0 || dims_raw.is_empty() {
        return Err(format_err(path, format!("bad dimensions element at offset {}: type {ty}", at + pos)));
    }
    let mut dims = Vec::new();
    for c in dims_raw.chunks_exact(4) {
        let d = e.u32(c) as i32;
        if d < 0 {
            return Err(format_err(path, format!("negative dimension {d} at offset {}", at + pos)));
        }
        dims.push(d as usize);
    }
    pos += used;
    let rest = b.get(pos..).unwrap_or(&[]);
    let (_, name_raw, used) = sub_element(path, rest, e, at + pos, "array name")?;
    let name = String::from_utf8_lossy(name_raw).into_owned();
    pos += used;
    // Classes 6..=15 are the numeric ones; cells, structs, chars, sparse and objects are skipped.
    let numeric = (6..=15).contains(&class) && !complex;
    let mut needed = 0;
    if numeric {
        let count = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
            .ok_or_else(|| format_err(path, format!("variable '{name}': dimensions {dims:?} overflow")))?;
        let rest = b.get(pos..).unwrap_or(&[]);
        let (ty, declared, hdr) = read_tag(path, rest, e, at + pos)
            .map_err(|_| format_err(path, format!("truncated data tag of variable '{name}' at offset {}", at + pos)))?;
        let size =
            value_size(ty).ok_or_else(|| format_err(path, format!("variable '{name}': unsupported data type {ty}")))?;
        let want = count.checked_mul(size).filter(|&w| w <= u32::MAX as u64).ok_or_else(|| {
            format_err(path, format!("variable '{name}': dimensions {dims:?} need more than a MAT v5 element holds"))
        })?;
        if declared as u64 != want {
            return Err(format_err(
                path,
                format!(
                    "variable '{name}': dimensions {dims:?} need {want} bytes of data, its data element at offset {} holds {declared}",
                    at + pos
                ),
            ));
        }
        needed = pos as u64 + if hdr == 4 { 8 } else { 8 + want };
    }
    Ok(Some(Layout { name, class, dims, numeric, data_at: pos, needed }))
}

fn parse_matrix(path: &Path, b: &[u8], e: Endian, at: usize) -> Result<Option<MatArray>> {
    let Some(layout) = matrix_layout(path, b, e, at, true)? else { return Ok(None) };
    if !layout.numeric {
        return Ok(None);
    }
    let Layout { name, class, dims, data_at: pos, .. } = layout;
    let count: usize = dims.iter().product();
    let rest = b.get(pos..).unwrap_or(&[]);
    let (ty, real, _) = sub_element(path, rest, e, at + pos, &format!("data of variable '{name}'"))?;
    let data = decode_numeric(path, &name, ty, real, e)?;
    if data.len() != count {
        return Err(format_err(
            path,
            format!("variable '{name}': dimensions {dims:?} need {count} values, found {}", data.len()),
        ));
    }
    Ok(Some(MatArray { name, class, dims, data }))
}

fn decode_numeric(path: &Path, name: &str, ty: u32, b: &[u8], e: Endian) -> Result<MatData> {
    macro_rules! widen {
        ($t:ty, $n:expr) => {{
            if b.len() % $n != 0 {
                return Err(format_err(
                    path,
                    format!("variable '{name}': {} bytes is not a whole number of values", b.len()),
                ));
            }
            b.chunks_exact($n)
                .map(|c| {
                    let a: [u8; $n] = c.try_into().expect("chunk");
                    (if e.big { <$t>::from_be_bytes(a) } else { <$t>::from_le_bytes(a) }) as f64
                })
                .collect::<Vec<f64>>()
        }};
    }
    Ok(match ty {
        MI_UINT8 => MatData::U8(b.to_vec()),
        MI_INT8 => MatData::F64(b.iter().map(|&v| v as i8 as f64).collect()),
        MI_INT16 => MatData::F64(widen!(i16, 2)),
        MI_UINT16 => MatData::F64(widen!(u16, 2)),
        MI_INT32 => MatData::F64(widen!(i32, 4)),
        MI_UINT32 => MatData::F64(widen!(u32, 4)),
        MI_SINGLE => MatData::F64(widen!(f32, 4)),
        MI_DOUBLE => MatData::F64(widen!(f64, 8)),
        MI_INT64 => MatData::F64(widen!(i64, 8)),
        MI_UINT64 => MatData::F64(widen!(u64, 8)),
        other => return Err(format_err(path, format!("variable '{name}': unsupported data type {other}"))),
    })
}

/// Writes little-endian MAT v5 files: `uint8` or `double` arrays, optionally zlib-compressed per
/// variable as MATLAB does. Used by the SynDigits generator, so its output loads like the original.
pub fn write_mat(path: &Path, arrays: &[MatArray], compress: bool) -> Result<()> {
    let mut out = Vec::new();
    let mut text = b"MATLAB 5.0 MAT-file, written by adapt-datasets".to_vec();
    text.resize(116, b' ');
    out.extend_from_slice(&text);
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&0x0100u16.to_le_bytes());
    out.extend_from_slice(b"IM");
    for a in arrays {
        let m = matrix_element(a);
        if compress {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(&m).map_err(|e| io_err(path, e))?;
            let z = z.finish().map_err(|e| io_err(path, e))?;
            out.extend_from_slice(&MI_COMPRESSED.to_le_bytes());
            out.extend_from_slice(&(z.len() as u32).to_le_bytes());
            out.extend_from_slice(&z);
        } else {
            out.extend_from_slice(&m);
        }
    }
    std::fs::write(path, out).map_err(|e| io_err(path, e))
}

fn push_sub(buf: &mut Vec<u8>, ty: u32, data: &[u8]) {
    buf.extend_from_slice(&ty.to_le_bytes());
    buf.extend_from_slice(&(data.len() as u32).to_le_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len().div_ceil(8) * 8, 0);
}

fn matrix_element(a: &MatArray) -> Vec<u8> {
    let mut body = Vec::new();
    let (class, ty, data): (u8, u32, Vec<u8>) = match &a.data {
        MatData::U8(v) => (CLASS_UINT8, MI_UINT8, v.clone()),
        MatData::F64(v) => (CLASS_DOUBLE, MI_DOUBLE, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    };
    let mut flags = (class as u32).to_le_bytes().to_vec();
    flags.extend_from_slice(&[0; 4]);
    push_sub(&mut body, MI_UINT32, &flags);
    push_sub(&mut body, MI_INT32, &a.dims.iter().flat_map(|&d| (d as i32).to_le_bytes()).collect::<Vec<_>>());
    push_sub(&mut body, MI_INT8, a.name.as_bytes());
    push_sub(&mut body, ty, &data);
    let mut m = MI_MATRIX.to_le_bytes().to_vec();
    m.extend_from_slice(&(body.len() as u32).to_le_bytes());
    m.extend_from_slice(&body);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_and_reader_round_trip_both_ways() {
        let dir = std::env::temp_dir().join(format!("adapt-mat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let arrays = vec![
            MatArray {
                name: "X".into(),
                class: CLASS_UINT8,
                dims: vec![2, 3, 1],
                data: MatData::U8(vec![1, 2, 3, 4, 5, 6]),
            },
            MatArray { name: "y".into(), class: CLASS_DOUBLE, dims: vec![1, 1], data: MatData::F64(vec![10.0]) },
        ];
        for compress in [false, true] {
            let p = dir.join(format!("rt{compress}.mat"));
            write_mat(&p, &arrays, compress).unwrap();
            assert_eq!(read_mat(&p).unwrap(), arrays);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn v73_and_garbage_are_rejected_with_the_file_name() {
        let p = Path::new("weird.mat");
        let mut h = b"MATLAB 7.3 MAT-file".to_vec();
        h.resize(600, 0);
        assert!(parse_mat(p, &h).unwrap_err().to_string().contains("v7.3"));
        let e = parse_mat(p, &[0u8; 200]).unwrap_err().to_string();
        assert!(e.contains("weird.mat") && e.contains("not a MATLAB v5"), "{e}");
    }
}
