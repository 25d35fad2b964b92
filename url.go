package stagedoor

import (
	"net/url"
	"strings"
)

// HLSURL returns the public playlist URL of a public name under hlsBase, the address
// viewers reach MediaMTX's HLS on (http://host:8888, with or without a trailing slash).
func HLSURL(hlsBase, name string) string {
	return strings.TrimRight(hlsBase, "/") + "/" + LivePrefix + name + "/index.m3u8"
}

// URLs are the public addresses streamers and viewers use, as printed by the CLI, the
// admin API and the panel.
type URLs struct {
	RTMP string // encoder "Server" field, e.g. rtmp://HOST:1935/live
	HLS  string // HLS base, e.g. http://HOST:8888
	SRT  string // SRT listener, e.g. srt://HOST:8890
	RTSP string // RTSP listener, e.g. rtsp://HOST:8554
	WHIP string // WebRTC listener, e.g. http://HOST:8889

	// RTMPS is the encoder "Server" field over TLS, e.g. rtmps://HOST:1937/live; "" when
	// the operator offers no RTMPS. The stream key is the same as for RTMP.
	RTMPS string
}

// HLSFor is the public playlist URL of a public name.
func (u URLs) HLSFor(name string) string { return HLSURL(u.HLS, name) }

// EncoderForms are the ways a streamer can enter user/password publishing in an encoder.
type EncoderForms struct {
	Stream string `json:"stream"`
	// TwoPart is OBS's Server + Stream Key fields.
	TwoPart struct {
		Server    string `json:"server"`
		StreamKey string `json:"stream_key"`
	} `json:"two_part"`
	// OneField is the whole URL in one field (ffmpeg, encoders with a single URL).
	OneField string `json:"one_field"`
	SRT      string `json:"srt"`
	RTSP     string `json:"rtsp"`
	WHIP     string `json:"whip"`

	// RTMPSServer and RTMPSOneField are TwoPart.Server and OneField over TLS; "" when
	// URLs.RTMPS is.
	RTMPSServer   string `json:"rtmps_server,omitempty"`
	RTMPSOneField string `json:"rtmps_one_field,omitempty"`
}

// Forms builds the encoder settings of stream for user with password secret (the
// bcrypt hash, or a placeholder when no password is set or the stream needs none).
func (u URLs) Forms(stream, user, secret string, auth bool) EncoderForms {
	var f EncoderForms
	f.Stream = stream
	query := ""
	if auth {
		query = "?user=" + user + "&pass=" + secret
	}
	f.TwoPart.Server = u.RTMP
	f.TwoPart.StreamKey = stream + query
	f.OneField = strings.TrimRight(u.RTMP, "/") + "/" + stream + query
	if u.RTMPS != "" {
		f.RTMPSServer = u.RTMPS
		f.RTMPSOneField = strings.TrimRight(u.RTMPS, "/") + "/" + stream + query
	}
	whip := strings.TrimRight(u.WHIP, "/") + "/live/" + stream + "/whip"
	rtsp, err := url.Parse(strings.TrimRight(u.RTSP, "/") + "/live/" + stream)
	if auth {
		f.SRT = u.SRT + "?streamid=publish:live/" + stream + ":" + user + ":" + secret
		if err == nil {
			rtsp.User = url.UserPassword(user, secret)
		}
		whip += " (HTTP Basic " + user + ":" + secret + ")"
	} else {
		f.SRT = u.SRT + "?streamid=publish:live/" + stream
	}
	if err == nil {
		f.RTSP = rtsp.String()
	}
	f.WHIP = whip
	return f
}
