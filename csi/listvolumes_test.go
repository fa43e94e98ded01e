package csi

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/routeros/rdstest"
)

// TestListVolumesAcrossRDSs: with a second RDS in ListRDS, ListVolumes
// pages through the volumes of both in volume id order, with sizes; a
// volume created and the token's own volume deleted between pages neither
// make a page repeat nor skip one that stayed; a token naming an RDS the
// controller does not list is Aborted; a listed RDS that does not answer
// fails the list (Unavailable). Without ListRDS only the default RDS is
// read.
func TestListVolumesAcrossRDSs(t *testing.T) {
	a, b, newCtrl := twoRDSs(t)
	c := newCtrl([]string{b.Addr()})
	ctx := context.Background()
	size := map[string]int64{} // volume id -> size
	vol := func(name string, rds *rdstest.Server, bytes int64) string {
		t.Helper()
		r, err := c.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: ctrlMountCaps(),
			CapacityRange: &csi.CapacityRange{RequiredBytes: bytes}, Parameters: map[string]string{KeyRDSAddress: rds.Addr()}})
		if err != nil {
			t.Fatal(err)
		}
		size[r.GetVolume().GetVolumeId()] = r.GetVolume().GetCapacityBytes()
		return r.GetVolume().GetVolumeId()
	}
	var ofA []string
	for i := range 3 {
		ofA = append(ofA, vol(fmt.Sprintf("pvc-a%d", i), a, int64(i+1)<<20))
		vol(fmt.Sprintf("pvc-b%d", i), b, int64(i+4)<<20)
	}
	slices.Sort(ofA)
	list := func(r *csi.ListVolumesRequest) []string {
		t.Helper()
		resp, err := c.ListVolumes(ctx, r)
		if err != nil {
			t.Fatalf("ListVolumes(%v): %v", r, err)
		}
		var ids []string
		for _, e := range resp.GetEntries() {
			v := e.GetVolume()
			if v.GetCapacityBytes() != size[v.GetVolumeId()] {
				t.Errorf("volume %s: size %d, want %d", v.GetVolumeId(), v.GetCapacityBytes(), size[v.GetVolumeId()])
			}
			ids = append(ids, v.GetVolumeId())
		}
		if resp.GetNextToken() != "" {
			ids = append(ids, "next:"+resp.GetNextToken())
		}
		return ids
	}
	all := slices.Sorted(maps.Keys(size))
	if got := list(&csi.ListVolumesRequest{}); !slices.Equal(got, all) {
		t.Fatalf("unfiltered list %v, want both RDSs' %v", got, all)
	}

	// Page by 2; between the first and the second page the token's own
	// volume is deleted and a new one created.
	checkPagingAcrossChange(t, all, func(max int32, tok string) []string {
		return list(&csi.ListVolumesRequest{MaxEntries: max, StartingToken: tok})
	}, func(tok string) string {
		if _, err := c.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: tok}); err != nil {
			t.Fatal(err)
		}
		ofA = slices.DeleteFunc(ofA, func(id string) bool { return id == tok })
		return vol("pvc-new", b, 1<<20)
	})

	// A token of an RDS the controller does not list.
	id, err := ParseVolumeID(ofA[0])
	if err != nil {
		t.Fatal(err)
	}
	other, err := FormatVolumeID("192.0.2.1:22", id.Slot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: other}); status.Code(err) != codes.Aborted {
		t.Errorf("token of an unlisted RDS: %v, want Aborted", err)
	}

	// Without ListRDS: the default RDS only.
	c = newCtrl(nil)
	if got := list(&csi.ListVolumesRequest{}); !slices.Equal(got, ofA) {
		t.Errorf("without ListRDS: %v, want a's %v", got, ofA)
	}

	// A listed RDS that does not answer fails the list.
	c = newCtrl([]string{b.Addr()})
	b.Close()
	if _, err := c.ListVolumes(ctx, &csi.ListVolumesRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("list with RDS b down: %v, want Unavailable", err)
	}
}

// checkPagingAcrossChange pages through a list of ids (all, sorted: what an
// unfiltered list returns) by 2, with list(max, token) returning one page's
// ids followed by "next:<token>" when there is more. Between the first and
// the second page, change deletes the object named by the first page's
// token and creates one, whose id it returns. Every id that stayed must be
// listed exactly once, in id order, the new one at most once. It returns
// the token it deleted and the id change created.
func checkPagingAcrossChange(t *testing.T, all []string, list func(max int32, tok string) []string, change func(tok string) string) (deleted, added string) {
	t.Helper()
	page := list(2, "")
	if len(page) != 3 || page[2] != "next:"+page[1] || !slices.Equal(page[:2], all[:2]) {
		t.Fatalf("first page %v, want %v and a token", page, all[:2])
	}
	tok := page[1]
	added = change(tok)
	got := page[:2]
	for i := 0; tok != ""; i++ {
		if i == 10 {
			t.Fatal("pagination does not end")
		}
		p := list(2, tok)
		tok = ""
		if n := len(p); n > 0 && strings.HasPrefix(p[n-1], "next:") {
			tok, p = strings.TrimPrefix(p[n-1], "next:"), p[:n-1]
		}
		got = append(got, p...)
	}
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	for _, id := range all {
		if id != page[1] && seen[id] != 1 {
			t.Errorf("%s listed %d times over the pages %v", id, seen[id], got)
		}
	}
	if !slices.IsSorted(got) {
		t.Errorf("pages %v not in id order", got)
	}
	if seen[added] > 1 {
		t.Errorf("%s, created between pages, listed %d times", added, seen[added])
	}
	return page[1], added
}
