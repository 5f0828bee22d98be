#include "blob/s3/s3_multipart.h"

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "blob/s3/s3_xml.h"

namespace modelfleet::blob::s3 {
namespace {

constexpr size_t kMinBufferGrowth = 64 * 1024;

class S3ObjectWriter final : public BlobWriter {
 public:
  S3ObjectWriter(std::shared_ptr<HttpClient> http, ObjectTarget target, uint64_t part_size)
      : http_(std::move(http)), target_(std::move(target)), part_size_(part_size) {}
  ~S3ObjectWriter() override { Abort(); }

  Status Append(std::span<const uint8_t> bytes) override {
    MF_RETURN_IF_ERROR(CheckUsable("Append"));
    while (!bytes.empty()) {
      if (buffer_.size() == part_size_) {
        // Only flush when more bytes follow: an object of exactly one part stays a single PUT.
        Status s = UploadBufferAsPart();
        if (!s.ok()) return MarkFailed(std::move(s));
      }
      const size_t n = static_cast<size_t>(
          std::min<uint64_t>(bytes.size(), part_size_ - buffer_.size()));
      Reserve(buffer_.size() + n);
      buffer_.insert(buffer_.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(n));
      bytes = bytes.subspan(n);
    }
    return Status::Ok();
  }

  Status Commit() override {
    MF_RETURN_IF_ERROR(CheckUsable("Commit"));
    Status s = upload_id_ ? CommitMultipart() : PutWholeObject();
    if (!s.ok()) {
      AbortMultipartUpload();
      return MarkFailed(std::move(s));
    }
    state_ = State::kCommitted;
    ReleaseBuffer();
    return Status::Ok();
  }

  void Abort() override {
    if (state_ == State::kCommitted || state_ == State::kAborted) return;
    AbortMultipartUpload();
    ReleaseBuffer();
    state_ = State::kAborted;
  }

 private:
  enum class State { kOpen, kFailed, kCommitted, kAborted };

  Status CheckUsable(std::string_view what) const {
    switch (state_) {
      case State::kOpen: return Status::Ok();
      case State::kFailed: return failure_;
      case State::kCommitted:
        return FailedPrecondition(std::string(what) + " on a committed writer for " +
                                  target_.where);
      case State::kAborted:
        return FailedPrecondition(std::string(what) + " on an aborted writer for " +
                                  target_.where);
    }
    return Status::Ok();
  }

  Status MarkFailed(Status s) {
    state_ = State::kFailed;
    failure_ = s;
    ReleaseBuffer();
    return s;
  }

  // Grows the buffer geometrically but never beyond part_size.
  void Reserve(size_t needed) {
    if (buffer_.capacity() >= needed) return;
    const size_t part_size = static_cast<size_t>(part_size_);
    const size_t grown = std::max({needed, buffer_.capacity() * 2, kMinBufferGrowth});
    buffer_.reserve(std::min(grown, part_size));
  }

  void ReleaseBuffer() {
    buffer_.clear();
    buffer_.shrink_to_fit();
  }

  Status PutWholeObject() {
    HttpRequest request;
    request.method = "PUT";
    request.path = target_.path;
    request.headers.emplace_back("content-type", "application/octet-stream");
    request.body = buffer_;
    const std::string op = "PUT " + target_.where;
    MF_ASSIGN_OR_RETURN(auto response, http_->Perform(request, op));
    if (!Is2xx(response.http_status)) {
      return StatusFromS3Error(op, response.http_status, response.body);
    }
    return Status::Ok();
  }

  Status StartMultipartUpload() {
    HttpRequest request;
    request.method = "POST";
    request.path = target_.path;
    request.query = {{"uploads", ""}};
    request.headers.emplace_back("content-type", "application/octet-stream");
    const std::string op = "CreateMultipartUpload for " + target_.where;
    MF_ASSIGN_OR_RETURN(auto response, http_->Perform(request, op));
    if (!Is2xx(response.http_status)) {
      return StatusFromS3Error(op, response.http_status, response.body);
    }
    std::optional<std::string> upload_id = XmlFirstElement(response.body, "UploadId");
    if (!upload_id || upload_id->empty()) {
      return Internal(op + ": reply has no UploadId: " + response.body.substr(0, 200));
    }
    upload_id_ = std::move(*upload_id);
    return Status::Ok();
  }

  Status UploadBufferAsPart() {
    if (!upload_id_) MF_RETURN_IF_ERROR(StartMultipartUpload());
    const uint64_t part_number = part_etags_.size() + 1;
    if (part_number > kMaxPartCount) {
      return Status(StatusCode::kResourceExhausted,
                    "upload of " + target_.where + " needs more than 10000 parts of " +
                        std::to_string(part_size_) + " bytes: raise S3Options.part_size");
    }
    HttpRequest request;
    request.method = "PUT";
    request.path = target_.path;
    request.query = {{"partNumber", std::to_string(part_number)}, {"uploadId", *upload_id_}};
    request.body = buffer_;
    const std::string op = "UploadPart " + std::to_string(part_number) + " of " + target_.where;
    MF_ASSIGN_OR_RETURN(auto response, http_->Perform(request, op));
    if (!Is2xx(response.http_status)) {
      return StatusFromS3Error(op, response.http_status, response.body);
    }
    auto etag = response.headers.find("etag");
    if (etag == response.headers.end() || etag->second.empty()) {
      return Internal(op + ": reply has no ETag header");
    }
    part_etags_.push_back(etag->second);
    buffer_.clear();  // keeps capacity: the next part reuses it
    return Status::Ok();
  }

  Status CommitMultipart() {
    if (!buffer_.empty()) MF_RETURN_IF_ERROR(UploadBufferAsPart());
    std::string xml = "<CompleteMultipartUpload>";
    for (size_t i = 0; i < part_etags_.size(); ++i) {
      xml += "<Part><PartNumber>" + std::to_string(i + 1) + "</PartNumber><ETag>" +
             XmlEscape(part_etags_[i]) + "</ETag></Part>";
    }
    xml += "</CompleteMultipartUpload>";
    HttpRequest request;
    request.method = "POST";
    request.path = target_.path;
    request.query = {{"uploadId", *upload_id_}};
    request.headers.emplace_back("content-type", "application/xml");
    request.body = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(xml.data()),
                                            xml.size());
    const std::string op = "CompleteMultipartUpload (" + std::to_string(part_etags_.size()) +
                           " parts) for " + target_.where;
    MF_ASSIGN_OR_RETURN(auto response, http_->Perform(request, op));
    // S3 may answer 200 and still report an error in the body.
    if (!Is2xx(response.http_status) ||
        response.body.find("<Error>") != std::string::npos) {
      return StatusFromS3Error(op, response.http_status, response.body);
    }
    upload_id_.reset();  // completed: nothing left to abort
    return Status::Ok();
  }

  // Best effort: errors are ignored (an S3 lifecycle rule for incomplete uploads is the backstop).
  void AbortMultipartUpload() {
    if (!upload_id_) return;
    HttpRequest request;
    request.method = "DELETE";
    request.path = target_.path;
    request.query = {{"uploadId", *upload_id_}};
    (void)http_->Perform(request, "AbortMultipartUpload for " + target_.where);
    upload_id_.reset();
  }

  std::shared_ptr<HttpClient> http_;
  const ObjectTarget target_;
  const uint64_t part_size_;
  std::vector<uint8_t> buffer_;
  std::optional<std::string> upload_id_;
  std::vector<std::string> part_etags_;
  State state_ = State::kOpen;
  Status failure_;
};

}  // namespace

std::unique_ptr<BlobWriter> NewS3ObjectWriter(std::shared_ptr<HttpClient> http, ObjectTarget target,
                                              uint64_t part_size) {
  return std::make_unique<S3ObjectWriter>(std::move(http), std::move(target), part_size);
}

}  // namespace modelfleet::blob::s3
