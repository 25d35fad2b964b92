package policy_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stagedoor/stagedoor/internal/testdb"

	"github.com/stagedoor/stagedoor"

	"github.com/stagedoor/stagedoor/authserver"
	"github.com/stagedoor/stagedoor/internal/testutil"
	"github.com/stagedoor/stagedoor/policy"
)

var (
	relaySecret = policy.Secret{User: "stagedoor-relay", Password: "relay-secret-1"}
	adminSecret = policy.Secret{User: "stagedoor-admin", Password: "admin-secret-1"}
	peerSecret  = policy.Secret{User: "stagedoor-peer", Password: "peer-secret-1"}
	testPolicy  = policy.Policy{Relay: relaySecret, Admin: adminSecret}
	peerPolicy  = policy.Policy{Relay: relaySecret, Admin: adminSecret, Peer: peerSecret,
		PeerNets: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("127.0.0.0/8")}}
)

// heldElsewherePolicy is peerPolicy on a node that knows name live on node c.
func heldElsewherePolicy(name string) policy.Policy {
	p := peerPolicy
	p.HeldElsewhere = func(n string) (string, bool) { return "c", n == name }
	return p
}

// peerRead is another cluster node pulling live/benw from ip.
func peerRead(ip string) policy.Attempt {
	r := req("read", "rtsp", "live/benw")
	r.IP, r.User, r.Password = ip, peerSecret.User, peerSecret.Password
	return r
}

// newFixture is a real store with an active user benw and a banned user mallory.
func newFixture(t testing.TB) testdb.Users { return testdb.NewUsers(t) }

// decide asks pol, with creds as its credentials, about a.
func decide(ctx context.Context, a policy.Attempt, creds policy.Credentials, pol policy.Policy) policy.Verdict {
	pol.Credentials = creds
	return pol.Decide(ctx, a)
}

// req builds a request from loopback with no credentials.
func req(action, protocol, path string) policy.Attempt {
	return policy.Attempt{IP: "127.0.0.1", Action: action, Protocol: protocol, Path: path}
}

func relayRead(f testdb.Users, ip string) policy.Attempt {
	r := req("read", "rtsp", "live/"+f.ActiveKey)
	r.IP, r.User, r.Password = ip, relaySecret.User, relaySecret.Password
	return r
}

func admin(action, path, ip string) policy.Attempt {
	r := req(action, "", path)
	r.IP, r.User, r.Password = ip, adminSecret.User, adminSecret.Password
	return r
}

func with(r policy.Attempt, f func(*policy.Attempt)) policy.Attempt {
	f(&r)
	return r
}

func TestDecide(t *testing.T) {
	f := newFixture(t)
	key := "live/" + f.ActiveKey
	for _, tt := range []struct {
		name string
		pol  policy.Policy
		req  policy.Attempt
		want bool
	}{
		{"OwnerPublishesToKeyPath", testPolicy, req("publish", "rtmp", key), true},
		{"OwnerPublishesFromAnywhere", testPolicy, with(req("publish", "srt", key), func(r *policy.Attempt) { r.IP = "203.0.113.7" }), true},
		{"OwnerPublishesOverWebRTC", testPolicy, req("publish", "webrtc", key), true},
		{"OwnerPublishesOverRTSP", testPolicy, req("publish", "rtsp", key), true},
		{"BannedKeyPublishDenied", testPolicy, req("publish", "rtmp", "live/"+f.BannedKey), false},
		{"UnknownKeyPublishDenied", testPolicy, req("publish", "rtmp", "live/"+stagedoor.NewKey()), false},
		{"PublishOverHLSDenied", testPolicy, req("publish", "hls", key), false},
		{"PublishOverMoQDenied", testPolicy, req("publish", "moq", key), false},
		{"PublishWithoutProtocolDenied", testPolicy, req("publish", "", key), false},
		{"PublishToPublicPathDenied", testPolicy, req("publish", "rtmp", "live/benw"), false},
		// The secret in the query (issue 3): the owner's key publishes straight to the public name.
		{"OwnKeyAsPasswordOnPublicPathAllowed", testPolicy,
			with(req("publish", "srt", "live/benw"), func(r *policy.Attempt) { r.User, r.Password = "benw", f.ActiveKey }), true},
		{"OwnKeyAsTokenOnPublicPathAllowed", testPolicy,
			with(req("publish", "webrtc", "live/benw"), func(r *policy.Attempt) { r.Token = f.ActiveKey }), true},
		{"OwnKeyInQueryOnPublicPathAllowed", testPolicy,
			with(req("publish", "rtmp", "live/benw"), func(r *policy.Attempt) { r.Query = "key=" + f.ActiveKey }), true},
		{"KeyOnAnotherUsersPublicPathDenied", testPolicy,
			with(req("publish", "rtmp", "live/mallory"), func(r *policy.Attempt) { r.Query = "key=" + f.ActiveKey }), false},
		{"BannedKeyInQueryOnOwnPathDenied", testPolicy,
			with(req("publish", "rtmp", "live/mallory"), func(r *policy.Attempt) { r.Query = "key=" + f.BannedKey }), false},
		{"KeyWithOtherUserNameDenied", testPolicy,
			with(req("publish", "srt", "live/benw"), func(r *policy.Attempt) { r.User, r.Password = "alice", f.ActiveKey }), false},
		{"MalformedKeyInQueryDenied", testPolicy,
			with(req("publish", "rtmp", "live/benw"), func(r *policy.Attempt) { r.Query = "key=sk_short" }), false},
		{"UnknownKeyInQueryDenied", testPolicy,
			with(req("publish", "rtmp", "live/benw"), func(r *policy.Attempt) { r.Query = "key=" + stagedoor.NewKey() }), false},
		{"PublishWithRelayCredsDenied", testPolicy,
			with(req("publish", "rtsp", "live/benw"), func(r *policy.Attempt) { r.User, r.Password = relaySecret.User, relaySecret.Password }), false},
		{"PublishWithAdminCredsDenied", testPolicy,
			with(req("publish", "rtmp", "live/benw"), func(r *policy.Attempt) { r.User, r.Password = adminSecret.User, adminSecret.Password }), false},
		{"PublishToDotDotPathDenied", testPolicy, req("publish", "rtmp", "live/../"+f.ActiveKey), false},
		{"PublishToTrailingSlashKeyDenied", testPolicy, req("publish", "rtmp", key+"/"), false},
		{"UppercasePublishDenied", testPolicy, req("PUBLISH", "rtmp", key), false},

		{"KeyPathReadDenied", testPolicy, req("read", "hls", key), false},
		{"KeyPathReadOverRTSPWithoutRelayDenied", testPolicy, req("read", "rtsp", key), false},
		{"KeyPathReadWithOwnKeyAsPasswordDenied", testPolicy,
			with(req("read", "rtsp", key), func(r *policy.Attempt) { r.User, r.Password = "benw", f.ActiveKey }), false},
		{"RelayReadsKeyPathFromLoopback", testPolicy, relayRead(f, "127.0.0.1"), true},
		{"RelayReadsKeyPathFromIPv6Loopback", testPolicy, relayRead(f, "::1"), true},
		{"RelayFromNonLoopbackDenied", testPolicy, relayRead(f, "10.0.0.5"), false},
		{"RelayWithoutIPDenied", testPolicy, relayRead(f, ""), false},
		{"RelayWithWrongPasswordDenied", testPolicy,
			with(relayRead(f, "127.0.0.1"), func(r *policy.Attempt) { r.Password += "x" }), false},
		{"RelayWithPasswordPrefixDenied", testPolicy,
			with(relayRead(f, "127.0.0.1"), func(r *policy.Attempt) { r.Password = r.Password[:len(r.Password)-1] }), false},
		{"RelayWithAdminUserDenied", testPolicy,
			with(relayRead(f, "127.0.0.1"), func(r *policy.Attempt) { r.User = adminSecret.User }), false},
		{"RelayOverRTMPDenied", testPolicy,
			with(relayRead(f, "127.0.0.1"), func(r *policy.Attempt) { r.Protocol = "rtmp" }), false},
		{"RelayOverHLSDenied", testPolicy,
			with(relayRead(f, "127.0.0.1"), func(r *policy.Attempt) { r.Protocol = "hls" }), false},
		{"RelayReadsPublicPathOverRTSPDenied", testPolicy,
			with(relayRead(f, "127.0.0.1"), func(r *policy.Attempt) { r.Path = "live/benw" }), false},
		{"RelayUnsetEmptyCredsDenied", policy.Policy{},
			with(relayRead(f, "127.0.0.1"), func(r *policy.Attempt) { r.User, r.Password = "", "" }), false},
		{"RelayUnsetPasswordDenied", policy.Policy{Relay: policy.Secret{User: relaySecret.User}},
			with(relayRead(f, "127.0.0.1"), func(r *policy.Attempt) { r.Password = "" }), false},

		{"PeerReadsPublicPathFromClusterNet", peerPolicy, peerRead("10.1.2.3"), true},
		{"PeerReadsPublicPathFromMappedIPv4", peerPolicy, peerRead("::ffff:10.1.2.3"), true},
		{"PeerReadsPublicPathFromLoopback", peerPolicy, peerRead("127.0.0.1"), true},
		{"PeerOutsideClusterNetDenied", peerPolicy, peerRead("10.2.0.1"), false},
		{"PeerWithoutIPDenied", peerPolicy, peerRead(""), false},
		{"PeerWithWrongPasswordDenied", peerPolicy, with(peerRead("10.1.2.3"), func(r *policy.Attempt) { r.Password += "x" }), false},
		{"PeerWithRelayPasswordDenied", peerPolicy, with(peerRead("10.1.2.3"), func(r *policy.Attempt) { r.Password = relaySecret.Password }), false},
		{"PeerReadsKeyPathDenied", peerPolicy, with(peerRead("127.0.0.1"), func(r *policy.Attempt) { r.Path = key }), false},
		{"PeerOverHLSIsAPublicRead", peerPolicy, with(peerRead("10.2.0.1"), func(r *policy.Attempt) { r.Protocol = "hls" }), true},
		{"PeerOverRTMPDenied", peerPolicy, with(peerRead("10.1.2.3"), func(r *policy.Attempt) { r.Protocol = "rtmp" }), false},
		{"PeerPublishDenied", peerPolicy, with(peerRead("10.1.2.3"), func(r *policy.Attempt) { r.Action = "publish" }), false},
		{"PeerUnsetDenied", policy.Policy{PeerNets: peerPolicy.PeerNets},
			with(peerRead("10.1.2.3"), func(r *policy.Attempt) { r.User, r.Password = "", "" }), false},
		{"PeerWithoutNetsDenied", policy.Policy{Peer: peerSecret}, peerRead("127.0.0.1"), false},
		{"PeerReadOfNameHeldByAnotherNodeDenied", heldElsewherePolicy("benw"), peerRead("10.1.2.3"), false},
		{"PeerReadOfNameNotHeldElsewhereAllowed", heldElsewherePolicy("alice"), peerRead("10.1.2.3"), true},

		{"PublicReadOverHLSAllowed", testPolicy, req("read", "hls", "live/benw"), true},
		{"PublicReadOfUnknownChannelOverHLSAllowed", testPolicy, req("read", "hls", "live/nobody"), true},
		{"PublicReadFromAnywhereAllowed", testPolicy,
			with(req("read", "hls", "live/benw"), func(r *policy.Attempt) { r.IP = "198.51.100.1" }), true},
		{"PublicReadOverRTSPDenied", testPolicy, req("read", "rtsp", "live/benw"), false},
		{"PublicReadOverWebRTCDenied", testPolicy, req("read", "webrtc", "live/benw"), false},
		{"PublicReadWithoutProtocolDenied", testPolicy, req("read", "", "live/benw"), false},
		{"PlaylistPathReadDenied", testPolicy, req("read", "hls", "live/index.m3u8"), false},
		{"UppercasePathReadDenied", testPolicy, req("read", "hls", "LIVE/BENW"), false},
		{"ReservedNameReadDenied", testPolicy, req("read", "hls", "live/api"), false},
		{"EmptyPathReadDenied", testPolicy, req("read", "hls", ""), false},

		{"AdminAPIFromLoopback", testPolicy, admin("api", "", "127.0.0.1"), true},
		{"AdminMetricsFromLoopback", testPolicy, admin("metrics", "", "127.0.0.1"), true},
		{"AdminPprofFromIPv6Loopback", testPolicy, admin("pprof", "", "::1"), true},
		{"AdminPlaybackOfKeyPathFromLoopback", testPolicy, admin("playback", key, "127.0.0.1"), true},
		{"AdminAPIWithPathDenied", testPolicy, admin("api", "live/benw", "127.0.0.1"), false},
		{"AdminMetricsWithPathDenied", testPolicy, admin("metrics", key, "127.0.0.1"), false},
		{"AdminFromNonLoopbackDenied", testPolicy, admin("api", "", "10.0.0.5"), false},
		{"AdminFromUnparsableIPDenied", testPolicy, admin("api", "", "localhost"), false},
		{"AdminWithWrongPasswordDenied", testPolicy,
			with(admin("api", "", "127.0.0.1"), func(r *policy.Attempt) { r.Password = "wrong" }), false},
		{"AdminWithRelayCredsDenied", testPolicy,
			with(admin("api", "", "127.0.0.1"), func(r *policy.Attempt) { r.User, r.Password = relaySecret.User, relaySecret.Password }), false},
		{"AdminUnsetEmptyCredsDenied", policy.Policy{}, with(admin("api", "", "127.0.0.1"), func(r *policy.Attempt) { r.User, r.Password = "", "" }), false},
		{"AnonymousAPIFromLoopbackDenied", testPolicy, req("api", "", ""), false},
		{"AnonymousPlaybackOfKeyPathDenied", testPolicy, req("playback", "", key), false},
		{"OwnerPlaybackWithKeyDenied", testPolicy,
			with(req("playback", "", key), func(r *policy.Attempt) { r.User, r.Password = "benw", f.ActiveKey }), false},
		{"AdminAPIOverUnknownProtocolDenied", testPolicy,
			with(admin("api", "", "127.0.0.1"), func(r *policy.Attempt) { r.Protocol = "x" }), false},

		{"UnknownProtocolPublishDenied", testPolicy, req("publish", "x", key), false},
		{"UnknownActionDenied", testPolicy, req("x", "rtmp", key), false},
		{"EmptyActionDenied", testPolicy, req("", "rtmp", key), false},
		{"EmptyRequestDenied", testPolicy, policy.Attempt{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := decide(t.Context(), tt.req, f.DB, tt.pol)
			if d.Allow != tt.want {
				t.Fatalf("Allow = %v, want %v (decision %+v)", d.Allow, tt.want, d)
			}
			wantStatus := http.StatusUnauthorized
			if tt.want {
				wantStatus = http.StatusNoContent
			}
			if authserver.Status(d) != wantStatus {
				t.Errorf("Status = %d, want %d", authserver.Status(d), wantStatus)
			}
			if d.Reason == "" {
				t.Error("Reason is empty")
			}
			for _, secret := range []string{f.ActiveKey, f.BannedKey, relaySecret.Password, adminSecret.Password} {
				if strings.Contains(fmt.Sprintf("%+v", d), secret) {
					t.Errorf("decision %+v carries a secret", d)
				}
			}
		})
	}
}

func TestDecidePublishFields(t *testing.T) {
	f := newFixture(t)
	d := decide(t.Context(), req("publish", "rtmp", "live/"+f.ActiveKey), f.DB, testPolicy)
	if d.UserID == 0 || d.KeyID == 0 {
		t.Errorf("decision %+v does not name the user and key by id", d)
	}
	want := policy.Verdict{
		Allow: true, Reason: d.Reason, PathKind: stagedoor.PathKey,
		User: "benw", UserID: d.UserID, KeyID: d.KeyID, KeyFP: stagedoor.Fingerprint(f.ActiveKey),
	}
	if d != want {
		t.Errorf("decision = %+v, want %+v", d, want)
	}

	d = decide(t.Context(), req("publish", "rtmp", "live/"+f.BannedKey), f.DB, testPolicy)
	if d.Allow || d.User != "mallory" || d.KeyFP != stagedoor.Fingerprint(f.BannedKey) || d.PathKind != stagedoor.PathKey {
		t.Errorf("banned decision = %+v, want a deny naming mallory by fingerprint", d)
	}
}

func TestDecidePublicReadProtocols(t *testing.T) {
	f := newFixture(t)
	pol := testPolicy
	pol.PublicReadProtocols = []string{"hls", "rtsp"}
	for _, tt := range []struct {
		name string
		req  policy.Attempt
		want bool
	}{
		{"PublicReadOverRTSPAllowed", req("read", "rtsp", "live/benw"), true},
		{"PublicReadOverHLSAllowed", req("read", "hls", "live/benw"), true},
		{"PublicReadOverWebRTCDenied", req("read", "webrtc", "live/benw"), false},
		{"PublicReadOverRTMPDenied", req("read", "rtmp", "live/benw"), false},
		{"KeyPathReadOverRTSPStillDenied", req("read", "rtsp", "live/"+f.ActiveKey), false},
		{"GarbagePathOverRTSPStillDenied", req("read", "rtsp", "live/../benw"), false},
		{"PublishToPublicPathStillDenied", req("publish", "rtsp", "live/benw"), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := decide(t.Context(), tt.req, f.DB, pol).Allow; got != tt.want {
				t.Errorf("Allow = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDecideLookupFaults(t *testing.T) {
	key := stagedoor.NewKey()
	for _, tt := range []struct {
		name       string
		creds      policy.Credentials
		ctx        func(t *testing.T) context.Context
		wantStatus int
	}{
		{"LookupErrorIs500", testutil.FailingCreds(), func(t *testing.T) context.Context { return t.Context() }, http.StatusInternalServerError},
		{"DeadlineIs503", testutil.BlockingCreds(), func(t *testing.T) context.Context {
			ctx, cancel := context.WithCancel(t.Context())
			cancel() // the deadline has already passed
			return ctx
		}, http.StatusServiceUnavailable},
		{"InactiveOwnerIs401", testutil.FakeCreds{KeyOwner: func(context.Context, stagedoor.Digest) (stagedoor.KeyOwner, error) {
			return stagedoor.KeyOwner{UserID: 1, UserName: "benw", Active: false, KeyID: 1, Fingerprint: stagedoor.Fingerprint(key)}, nil
		}}, func(t *testing.T) context.Context { return t.Context() }, http.StatusUnauthorized},
		{"WrappedNotFoundIs401", testutil.FakeCreds{KeyOwner: func(context.Context, stagedoor.Digest) (stagedoor.KeyOwner, error) {
			return stagedoor.KeyOwner{}, fmt.Errorf("lookup: %w", stagedoor.ErrNotFound)
		}}, func(t *testing.T) context.Context { return t.Context() }, http.StatusUnauthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := decide(tt.ctx(t), req("publish", "rtmp", "live/"+key), tt.creds, testPolicy)
			if d.Allow {
				t.Fatalf("Allow = true on a fault, want a deny (%+v)", d)
			}
			if authserver.Status(d) != tt.wantStatus {
				t.Errorf("Status = %d, want %d", authserver.Status(d), tt.wantStatus)
			}
			if d.KeyFP != stagedoor.Fingerprint(key) {
				t.Errorf("KeyFP = %q, want %q", d.KeyFP, stagedoor.Fingerprint(key))
			}
		})
	}
}

// TestDecideNoLookupOutsideKeyPaths checks threats.md T04: no database query for a path
// outside the two allowed shapes, whatever the action.
func TestDecideNoLookupOutsideKeyPaths(t *testing.T) {
	key := stagedoor.NewKey()
	var n atomic.Int64
	creds := testutil.CountingCreds(&n)
	paths := []string{
		"", "live/../" + key, "live//" + key, "/live/" + key, "live/" + key + "/",
		"LIVE/" + key, "live/" + key + "\x00", "live/" + key + "\u200b", "live/sk_" + strings.Repeat("a", 42),
		"live/sk_" + strings.Repeat("a", 44), "live/index.m3u8", key,
	}
	for _, p := range paths {
		for _, action := range []string{"publish", "read", "playback", "api", "x"} {
			if d := decide(t.Context(), req(action, "rtmp", p), creds, testPolicy); d.Allow {
				t.Errorf("Decide(%s %q) allowed", action, p)
			}
		}
	}
	if got := n.Load(); got != 0 {
		t.Errorf("lookups = %d, want 0", got)
	}
	// Positive control: a key path does reach the lookup.
	decide(t.Context(), req("publish", "rtmp", "live/"+key), creds, testPolicy)
	if got := n.Load(); got != 1 {
		t.Errorf("lookups after a key-path publish = %d, want 1", got)
	}
}

// Dimensions of the decision matrix (threats.md T05). Paths and credentials belong to
// alice ("own") or bob ("other"); mallory is banned.
const (
	pathActiveKey    = "ActiveKey"    // live/<alice's key>
	pathBannedKey    = "BannedKey"    // live/<mallory's key>
	pathUnknownKey   = "UnknownKey"   // live/sk_AAA…
	pathOwnChannel   = "OwnChannel"   // live/alice: her keys publish here
	pathOwnStream    = "OwnStream"    // live/concert: alice's password stream
	pathOtherChannel = "OtherChannel" // live/bob
	pathOtherStream  = "OtherStream"  // live/bobcam: bob's password stream
	pathNoAuthStream = "NoAuthStream" // live/lobbycam: alice's stream without auth
	pathNobodys      = "NobodysName"  // live/nobody: a public name no one owns
	pathGarbage      = "Garbage"
	pathEmpty        = "Empty"

	credsNone          = "NoCreds"
	credsRelayLoopback = "RelayLoopback"
	credsRelayRemote   = "RelayRemote"
	credsAdminLoopback = "AdminLoopback"
	credsAdminRemote   = "AdminRemote"
	credsWrongPassword = "WrongPassword" // the relay user with a wrong password
	credsOwnKeyQuery   = "OwnKeyQuery"   // ?key=<alice's key>
	credsOwnKeyPass    = "OwnKeyAsPassword"
	credsOwnKeyToken   = "OwnKeyAsToken"
	credsOwnHash       = "OwnHashAsPassword"
	credsOwnPlaintext  = "OwnPlaintext"
	credsOwnWrongPlain = "OwnUserWrongPlaintext"
	credsOwnUserBobPw  = "OwnUserOthersHash" // user alice, bob's hash
	credsWrongKeyQuery = "UnknownKeyQuery"
	credsOtherKeyQuery = "OtherKeyQuery" // ?key=<bob's key>
	credsOtherKeyPass  = "OtherKeyAsPassword"
	credsOtherHash     = "OtherHashAsPassword"
	credsOtherPlain    = "OtherPlaintext"
	credsKeyOtherName  = "OwnKeyUnderOtherName" // user bob, alice's key as the password
)

var (
	matrixActions   = []string{"publish", "read", "playback", "api", "metrics", "pprof", "", "PUBLISH", "x"}
	matrixProtocols = []string{"rtsp", "rtmp", "hls", "webrtc", "srt", "moq", "", "x"}
	matrixPaths     = []string{pathActiveKey, pathBannedKey, pathUnknownKey, pathOwnChannel, pathOwnStream,
		pathOtherChannel, pathOtherStream, pathNoAuthStream, pathNobodys, pathGarbage, pathEmpty}
	matrixCreds = []string{credsNone, credsRelayLoopback, credsRelayRemote, credsAdminLoopback, credsAdminRemote,
		credsWrongPassword, credsOwnKeyQuery, credsOwnKeyPass, credsOwnKeyToken, credsOwnHash, credsOwnPlaintext,
		credsOwnWrongPlain, credsOwnUserBobPw, credsWrongKeyQuery, credsOtherKeyQuery, credsOtherKeyPass,
		credsOtherHash, credsOtherPlain, credsKeyOtherName}
)

// pathOwner and credsOwner say whose a path or a credential is ("" for nobody's).
func pathOwner(path string) string {
	switch path {
	case pathActiveKey, pathOwnChannel, pathOwnStream, pathNoAuthStream:
		return "alice"
	case pathOtherChannel, pathOtherStream:
		return "bob"
	}
	return ""
}

func credsOwner(creds string) string {
	switch creds {
	case credsOwnKeyQuery, credsOwnKeyPass, credsOwnKeyToken, credsOwnHash, credsOwnPlaintext:
		return "alice"
	case credsOtherKeyQuery, credsOtherKeyPass, credsOtherHash, credsOtherPlain:
		return "bob"
	}
	return ""
}

// presentsKey: the credential carries a stream key (in the query, as the password or token).
func presentsKey(creds string) bool {
	switch creds {
	case credsOwnKeyQuery, credsOwnKeyPass, credsOwnKeyToken, credsWrongKeyQuery, credsOtherKeyQuery, credsOtherKeyPass,
		credsKeyOtherName:
		return true
	}
	return false
}

// wantAllow is the truth table of the policy, written without looking at Decide's
// structure:
//   - a protocol MediaMTX never sends is denied for every action;
//   - publish, over rtmp, rtsp, srt or webrtc only:
//   - to the key path of an active user's key, whatever the credentials;
//   - to a user's channel live/<user>: only with one of that user's keys, in the query,
//     as the password (under that user's name) or as the token;
//   - to a password stream: only with its owner's name and password or bcrypt hash;
//   - to a no-auth stream: anyone, unless a key is presented (a key is only good on
//     its own user's channel);
//   - read of a key path: only the relay credential, over rtsp, from loopback;
//   - read of a public path: only over hls;
//   - playback: only the admin credential from loopback, any path;
//   - api, metrics, pprof: only the admin credential from loopback, with no path;
//   - anything else, including unknown and wrongly cased actions: denied.
func wantAllow(action, protocol, path, creds string) bool {
	switch protocol {
	case "rtsp", "rtmp", "hls", "webrtc", "srt", "moq", "":
	default:
		return false
	}
	isKeyPath := path == pathActiveKey || path == pathBannedKey || path == pathUnknownKey
	isPublic := (pathOwner(path) != "" && !isKeyPath) || path == pathNobodys
	switch action {
	case "publish":
		switch protocol {
		case "rtmp", "rtsp", "srt", "webrtc":
		default:
			return false
		}
		sameOwner := credsOwner(creds) == pathOwner(path)
		switch path {
		case pathActiveKey:
			return true
		case pathOwnChannel, pathOtherChannel:
			return sameOwner && presentsKey(creds)
		case pathOwnStream, pathOtherStream:
			return sameOwner && !presentsKey(creds) && credsOwner(creds) != ""
		case pathNoAuthStream:
			return !presentsKey(creds)
		}
		return false
	case "read":
		if isKeyPath {
			return creds == credsRelayLoopback && protocol == "rtsp"
		}
		if isPublic {
			return protocol == "hls"
		}
		return false
	case "playback":
		return creds == credsAdminLoopback
	case "api", "metrics", "pprof":
		return creds == credsAdminLoopback && path == pathEmpty
	}
	return false
}

// matrixFixture is publishFixture (alice with key, password stream concert and no-auth
// stream lobbycam; bob with password stream bobcam) plus a key of bob's and a banned
// user mallory with a key.
type matrixFixture struct {
	publishFixture
	bobKey, bannedKey string
}

func newMatrixFixture(t *testing.T) matrixFixture {
	t.Helper()
	f := matrixFixture{publishFixture: newPublishFixture(t)}
	ctx := t.Context()
	k, err := f.db.AddKey(ctx, "bob", "matrix")
	if err != nil {
		t.Fatalf("AddKey(bob): %v", err)
	}
	f.bobKey = k.StreamKey
	m, err := f.db.CreateUser(ctx, "mallory")
	if err != nil {
		t.Fatalf("CreateUser(mallory): %v", err)
	}
	if err := f.db.SetActive(ctx, "mallory", false); err != nil {
		t.Fatalf("SetActive(mallory): %v", err)
	}
	f.bannedKey = m.StreamKey
	return f
}

func matrixRequest(f matrixFixture, action, protocol, path, creds string) (policy.Attempt, string) {
	r := policy.Attempt{Action: action, Protocol: protocol, IP: "127.0.0.1"}
	wantKind := stagedoor.PathPublic
	switch path {
	case pathActiveKey:
		r.Path, wantKind = "live/"+f.aliceKey, stagedoor.PathKey
	case pathBannedKey:
		r.Path, wantKind = "live/"+f.bannedKey, stagedoor.PathKey
	case pathUnknownKey:
		r.Path, wantKind = "live/"+stagedoor.KeyPrefix+strings.Repeat("A", 43), stagedoor.PathKey
	case pathOwnChannel:
		r.Path = "live/alice"
	case pathOwnStream:
		r.Path = "live/concert"
	case pathOtherChannel:
		r.Path = "live/bob"
	case pathOtherStream:
		r.Path = "live/bobcam"
	case pathNoAuthStream:
		r.Path = "live/lobbycam"
	case pathNobodys:
		r.Path = "live/nobody"
	case pathGarbage:
		r.Path, wantKind = "live/../alice", stagedoor.PathOther
	case pathEmpty:
		r.Path, wantKind = "", ""
	}
	switch creds {
	case credsRelayLoopback:
		r.User, r.Password = relaySecret.User, relaySecret.Password
	case credsRelayRemote:
		r.User, r.Password, r.IP = relaySecret.User, relaySecret.Password, "10.0.0.5"
	case credsAdminLoopback:
		r.User, r.Password = adminSecret.User, adminSecret.Password
	case credsAdminRemote:
		r.User, r.Password, r.IP = adminSecret.User, adminSecret.Password, "10.0.0.5"
	case credsWrongPassword:
		r.User, r.Password = relaySecret.User, "wrong-password"
	case credsOwnKeyQuery:
		r.Query = "key=" + f.aliceKey
	case credsOwnKeyPass:
		r.User, r.Password = "alice", f.aliceKey
	case credsOwnKeyToken:
		r.Token = f.aliceKey
	case credsOwnHash:
		r.User, r.Password = "alice", f.aliceHash
	case credsOwnPlaintext:
		r.User, r.Password = "alice", alicePassword
	case credsOwnWrongPlain:
		r.User, r.Password = "alice", alicePassword+"!"
	case credsOwnUserBobPw:
		r.User, r.Password = "alice", f.bobHash
	case credsWrongKeyQuery:
		r.Query = "key=" + stagedoor.KeyPrefix + strings.Repeat("B", 43)
	case credsOtherKeyQuery:
		r.Query = "key=" + f.bobKey
	case credsOtherKeyPass:
		r.User, r.Password = "bob", f.bobKey
	case credsOtherHash:
		r.User, r.Password = "bob", f.bobHash
	case credsOtherPlain:
		r.User, r.Password = "bob", bobPassword
	case credsKeyOtherName:
		r.User, r.Password = "bob", f.aliceKey
	}
	return r, wantKind
}

func TestDecideMatrix(t *testing.T) {
	f := newMatrixFixture(t)
	// A real password limiter, with its limits out of the way: the matrix sends alice's
	// wrong password from one address many times, and must see every answer the
	// credentials deserve. Correct plaintexts are cached after their first bcrypt.
	pw := policy.NewPasswords()
	pw.IPMaxFailures, pw.UserFreeFailures, pw.RatePerSecond = 1<<30, 1<<30, 1<<30
	pol := testPolicy
	pol.Passwords = pw
	var cases, allowed, publicPublishes, cross, crossAllowed int
	for _, action := range matrixActions {
		for _, protocol := range matrixProtocols {
			for _, path := range matrixPaths {
				for _, creds := range matrixCreds {
					cases++
					name := fmt.Sprintf("action=%q/protocol=%q/%s/%s", action, protocol, path, creds)
					r, wantKind := matrixRequest(f, action, protocol, path, creds)
					want := wantAllow(action, protocol, path, creds)
					d := decide(t.Context(), r, f.db, pol)
					isCross := action == "publish" && credsOwner(creds) != "" && pathOwner(path) != "" && credsOwner(creds) != pathOwner(path) &&
						path != pathActiveKey && path != pathNoAuthStream
					if isCross {
						cross++
						if d.Allow {
							crossAllowed++
						}
					}
					if d.Allow != want {
						t.Errorf("%s: Allow = %v, want %v (reason %q)", name, d.Allow, want, d.Reason)
						continue
					}
					if d.Allow {
						allowed++
						if action == "publish" && wantKind == stagedoor.PathPublic {
							publicPublishes++
						}
					}
					wantStatus := http.StatusUnauthorized
					if want {
						wantStatus = http.StatusNoContent
					}
					if authserver.Status(d) != wantStatus {
						t.Errorf("%s: Status = %d, want %d", name, authserver.Status(d), wantStatus)
					}
					if d.PathKind != wantKind {
						t.Errorf("%s: PathKind = %q, want %q", name, d.PathKind, wantKind)
					}
				}
			}
		}
	}
	if want := 9 * 8 * 11 * 19; cases != want {
		t.Errorf("matrix has %d cases, want %d", cases, want)
	}
	// publish, per ingest protocol: key path 19 creds, channels 3 + 2 keys, streams 2 + 2
	// passwords or hashes, no-auth stream the 12 creds without a key; relay read: 3 key
	// paths; public read: 6 paths × 19 creds; playback: 7 protocols × 11 paths;
	// api/metrics/pprof: 3 × 7 protocols.
	if want := 4*(19+3+2+2+2+12) + 3 + 6*19 + 7*11 + 3*7; allowed != want {
		t.Errorf("matrix allowed %d cases, want %d", allowed, want)
	}
	if want := 4 * (3 + 2 + 2 + 2 + 12); publicPublishes != want {
		t.Errorf("public-name publishes allowed: %d, want %d", publicPublishes, want)
	}
	if cross == 0 || crossAllowed != 0 {
		t.Errorf("publishes with one user's credential on another's path: %d of %d cases allowed, want 0 of > 0", crossAllowed, cross)
	}
	// Only plaintext passwords on their owner's stream reach bcrypt: alice's and bob's
	// right ones once each (then cached), alice's wrong one once per ingest protocol.
	if got, want := pw.BcryptRuns(), int64(2+4); got != want {
		t.Errorf("BcryptRuns = %d, want %d", got, want)
	}
}

// TestFirstWinsAcrossNodes: while another live node holds a public name, a publish on it
// that a password or no-auth admits is refused ("live on node b"); one a stream key
// admits is not (newest wins for keys); a name nobody else holds is unaffected.
func TestFirstWinsAcrossNodes(t *testing.T) {
	f := testdb.NewUsers(t)
	ctx := t.Context()
	if _, err := f.DB.CreateStream(ctx, "open", "benw", false); err != nil { // no-auth
		t.Fatal(err)
	}
	p := &policy.Policy{Credentials: f.DB, Passwords: policy.NewPasswords(), Admissions: policy.NewAdmissions(),
		HeldElsewhere: func(name string) (string, bool) { return "b", name == "open" || name == "benw" }}
	noAuth := policy.Attempt{Action: policy.ActionPublish, Protocol: "rtmp", Path: "live/open", IP: "192.0.2.1"}
	if v := p.Decide(ctx, noAuth); v.Allow || v.Reason != policy.ReasonHeldElsewhere+"b" {
		t.Errorf("no-auth publish of a name b holds: %+v, want refused as live on node b", v)
	}
	keyed := policy.Attempt{Action: policy.ActionPublish, Protocol: "rtmp", Path: "live/benw", Query: "key=" + f.ActiveKey, IP: "192.0.2.1"}
	if v := p.Decide(ctx, keyed); !v.Allow {
		t.Errorf("key publish of a name b holds: %+v, want allowed (newest wins for keys)", v)
	}
	p.HeldElsewhere = func(string) (string, bool) { return "", false }
	if v := p.Decide(ctx, noAuth); !v.Allow {
		t.Errorf("no-auth publish of a free name: %+v, want allowed", v)
	}
}

// TestKeysFirstWins: with KeysFirstWins (--cluster-key-takeover=false) a key publish of a
// name another live node holds is refused too, on the key path and on the public name.
func TestKeysFirstWins(t *testing.T) {
	f := testdb.NewUsers(t)
	ctx := t.Context()
	p := &policy.Policy{Credentials: f.DB, Admissions: policy.NewAdmissions(), KeysFirstWins: true,
		HeldElsewhere: func(name string) (string, bool) { return "b", name == "benw" }}
	for form, a := range map[string]policy.Attempt{
		"key path":          {Action: policy.ActionPublish, Protocol: "rtmp", Path: "live/" + f.ActiveKey, IP: "192.0.2.1"},
		"?key= on the name": {Action: policy.ActionPublish, Protocol: "rtmp", Path: "live/benw", Query: "key=" + f.ActiveKey, IP: "192.0.2.1"},
	} {
		if v := p.Decide(ctx, a); v.Allow || v.Reason != policy.ReasonHeldElsewhere+"b" {
			t.Errorf("%s with keys first wins: reason %q allow %v, want refused as live on node b", form, v.Reason, v.Allow)
		}
		if v, _, _ := p.DecideIngest(ctx, a); v.Allow {
			t.Errorf("%s, the front's decision with keys first wins: allowed, want refused", form)
		}
	}
}
