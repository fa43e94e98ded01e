package rdstest

import "strings"

// Backend mirrors the model's files and NVMe/TCP exports onto something
// real (e2e/nvmet's FileBackend: real files exported by the kernel's nvmet
// target). The model stays the one source of RouterOS semantics: it
// validates every command and decides its effects; only then does it call
// the Backend, and it commits its own state only when every call
// succeeded. A Backend error fails the command with
// "failure: emulator backend: <error>" (an unknown error to the client).
//
// Names are /file names: the path without its leading '/'. Calls are
// serialised by the Server.
type Backend interface {
	// CreateFile makes a new file of size bytes (sparse).
	CreateFile(name string, size int64) error
	// CopyFile makes dst a copy of src's bytes (copy-from).
	CopyFile(src, dst string) error
	// GrowFile sets a file's size to size bytes, never smaller.
	GrowFile(name string, size int64) error
	// RemoveFile removes a file; a file that is not there is success.
	RemoveFile(name string) error
	// Export exports file as subsystem nqn with namespace 1 on a TCP port.
	Export(file string, port int, nqn string) error
	// Unexport removes an export made by Export.
	Unexport(file string, port int, nqn string) error
	// Resized tells an export that its file grew (the target re-reads the
	// size and tells connected hosts).
	Resized(file string, port int, nqn string) error
	// AllowHosts sets the hosts (host NQNs) an export lets connect: none
	// is any host (nvme-tcp-server-allow-host-name=""). Hosts connected
	// already are not disconnected (nvmet checks a host when it connects).
	AllowHosts(file string, port int, nqn string, hosts []string) error
}

// allowed is the host list of an allow-host-name value ("" = any host).
func allowed(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// export is one disk exported over NVMe/TCP.
type export struct {
	file string // /file name of the backing file
	port int
	nqn  string
}

func (d *Disk) export() (export, bool) {
	return export{file: d.fileName(), port: d.NVMePort, nqn: d.NVMeNQN}, d.NVMeExport
}

func (d *Disk) fileName() string { return trimSlash(d.FilePath) }

func trimSlash(p string) string {
	if len(p) > 0 && p[0] == '/' {
		return p[1:]
	}
	return p
}

func backendFailure(err error) failure {
	return failure("failure: emulator backend: " + err.Error())
}
