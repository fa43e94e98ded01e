//go:build linux

package kerneltest

import (
	"net"
	"path/filepath"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// rawCodec passes gRPC message bytes through unparsed.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// withControllerService puts a transparent proxy in front of the node
// plugin's socket that adds CONTROLLER_SERVICE to GetPluginCapabilities, so
// that csi-sanity pairs the node plugin with the controller on its own socket
// (it consults the node socket's Identity for that) and runs the end-to-end
// specs (create, stage, publish, controller and node expansion) instead of
// skipping them. Every call is forwarded byte for byte, status codes included.
func withControllerService(t *testing.T, upstream string) string {
	t.Helper()
	conn, err := grpc.NewClient(upstream, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	t.Cleanup(func() { conn.Close() })
	sock := filepath.Join(t.TempDir(), "proxy.sock")
	l, err := net.Listen("unix", sock)
	must(t, err)
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(stream)
		var req, resp []byte
		if err := stream.RecvMsg(&req); err != nil {
			return err
		}
		if err := conn.Invoke(stream.Context(), method, &req, &resp, grpc.ForceCodec(rawCodec{})); err != nil {
			return err
		}
		if method == "/csi.v1.Identity/GetPluginCapabilities" {
			var caps csipb.GetPluginCapabilitiesResponse
			if err := proto.Unmarshal(resp, &caps); err != nil {
				return err
			}
			caps.Capabilities = append(caps.Capabilities, &csipb.PluginCapability{
				Type: &csipb.PluginCapability_Service_{Service: &csipb.PluginCapability_Service{Type: csipb.PluginCapability_Service_CONTROLLER_SERVICE}},
			})
			if resp, err = proto.Marshal(&caps); err != nil {
				return err
			}
		}
		return stream.SendMsg(&resp)
	}))
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return "unix://" + sock
}
