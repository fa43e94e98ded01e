// Package mountinfo parses the kernel's mount table as
// /proc/<pid>/mountinfo gives it (proc(5)): one Entry per mount, with the
// device number of the mounted file system, the mounted subtree, the mount
// point, the file system type and the source. The kernel octal-escapes
// space, tab, newline and backslash in paths (\040, \011, \012, \134); the
// parser decodes them, so every path in an Entry is the path as the file
// system sees it.
package mountinfo
