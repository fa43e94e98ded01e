package sysfs

// BeginTeardown marks controller name of fs as being deleted by this
// process, as WriteControllerAttr does for the length of a delete_controller
// write, until the returned function is called.
func BeginTeardown(fs FS, name string) (end func()) {
	return guard.beginTeardown(fs.path(classNVMe, name))
}
